package admin

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// guard protects an endpoint that changes the daemon or reveals its
// internals. Off (enabled false): 403 naming the flag that turns it on. On:
// the request must name an allowed host (DNS rebinding), must not come from
// another site (Origin, Sec-Fetch-Site: Go's CrossOriginProtection), and must
// carry the bearer token. Refusals are logged at WARN.
func (s *Server) guard(enabled bool, flag string, h http.HandlerFunc) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !enabled {
			s.refuse(w, r, http.StatusForbidden, errors.New("this endpoint is off; start the daemon with "+flag+" and a token to enable it"))
			return
		}
		if !s.hostAllowed(r.Host) {
			s.refuse(w, r, http.StatusForbidden, errors.New("host "+r.Host+" is not this server's (DNS rebinding protection; see -admin-allowed-hosts)"))
			return
		}
		if err := sameOrigin(r); err != nil {
			s.refuse(w, r, http.StatusForbidden, err)
			return
		}
		if err := cop.Check(r); err != nil {
			s.refuse(w, r, http.StatusForbidden, err)
			return
		}
		if !s.tokenOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="polymur admin"`)
			s.refuse(w, r, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		h(w, r)
	})
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, err error) {
	s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
		"host", r.Host, "origin", r.Header.Get("Origin"), "code", code, "err", err)
	writeError(w, code, err)
}

func (s *Server) tokenOK(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.cfg.Token)) == 1
}

// hostAllowed accepts IP literals (they cannot be rebound), localhost, the
// listen host and the configured names.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" {
		return true
	}
	if lh, _, err := net.SplitHostPort(s.cfg.Addr); err == nil && strings.EqualFold(lh, host) {
		return true
	}
	return slices.ContainsFunc(s.cfg.AllowedHosts, func(a string) bool { return strings.EqualFold(a, host) })
}

// sameOrigin refuses a request whose Origin header names another host than
// the one it was sent to.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return errors.New("cross-origin request refused (Origin " + o + ")")
	}
	return nil
}
