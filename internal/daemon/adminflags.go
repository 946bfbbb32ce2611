package daemon

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/polymur/polymur/admin"
)

// AdminFlags are the admin HTTP port's flags, the same on every daemon. The
// token never comes from a flag value (it would show in ps and in
// /debug/pprof/cmdline): -admin-token-file or PREFIX_ADMIN_TOKEN.
type AdminFlags struct {
	Addr         string
	Write, Pprof bool
	TokenFile    string
	AllowedHosts string

	token string
}

// Register defines the admin flags; what describes -admin-addr.
func (a *AdminFlags) Register(fs *flag.FlagSet, what string) {
	fs.StringVar(&a.Addr, "admin-addr", "", "Admin HTTP listen address: "+what+" (empty disables; e.g. localhost:2040)")
	fs.BoolVar(&a.Write, "admin-write", false, "Enable the admin HTTP endpoints that change the daemon (destination changes); they need the admin token")
	fs.BoolVar(&a.Pprof, "admin-pprof", false, "Enable /debug/pprof/ on the admin port; it needs the admin token")
	fs.StringVar(&a.TokenFile, "admin-token-file", "", "File holding the bearer token for -admin-write and -admin-pprof (or set the token itself in the environment variable <PREFIX>_ADMIN_TOKEN)")
	fs.StringVar(&a.AllowedHosts, "admin-allowed-hosts", "", "Comma-separated host names a protected admin request may name in its Host header, besides IP addresses, localhost and the -admin-addr host")
}

// Check loads the token when a protected endpoint is enabled; prefix is the
// daemon's environment prefix (POLYMUR, POLYMUR_PROXY, POLYMUR_GW).
func (a *AdminFlags) Check(prefix string) error {
	if !a.Write && !a.Pprof {
		return nil
	}
	env := prefix + "_ADMIN_TOKEN"
	switch {
	case a.TokenFile != "":
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return fmt.Errorf("-admin-token-file: %w", err)
		}
		a.token = strings.TrimSpace(string(b))
		if len(a.token) < 16 {
			return fmt.Errorf("-admin-token-file %s: the token must have at least 16 characters", a.TokenFile)
		}
	case os.Getenv(env) != "":
		a.token = strings.TrimSpace(os.Getenv(env))
		if len(a.token) < 16 {
			return fmt.Errorf("%s: the token must have at least 16 characters", env)
		}
	default:
		return errors.New("-admin-write and -admin-pprof need a token: -admin-token-file or " + env)
	}
	if a.Addr == "" {
		return errors.New("-admin-write and -admin-pprof need -admin-addr")
	}
	return nil
}

// Apply copies the flags into cfg.
func (a *AdminFlags) Apply(cfg *admin.Config) {
	cfg.Addr, cfg.Write, cfg.Pprof, cfg.Token = a.Addr, a.Write, a.Pprof, a.token
	for h := range strings.SplitSeq(a.AllowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		}
	}
}

// ClientFlags limit the clients of a metrics listener (polymur, the proxy).
type ClientFlags struct {
	IdleTimeout time.Duration
	MaxConns    int
}

// Register defines -client-idle-timeout and -max-connections.
func (c *ClientFlags) Register(fs *flag.FlagSet) {
	fs.DurationVar(&c.IdleTimeout, "client-idle-timeout", 10*time.Minute, "Disconnect a client that sent nothing for this long (carbon-c-relay: 10 minutes); 0 never")
	fs.IntVar(&c.MaxConns, "max-connections", 0, "Most client connections open at once on the metrics port; more are closed at once and counted (0: no limit)")
}

// Check validates the client flags.
func (c *ClientFlags) Check() error {
	return Require(
		Rule{"-client-idle-timeout must be 0 or positive", c.IdleTimeout >= 0},
		Rule{"-max-connections must be 0 or positive", c.MaxConns >= 0},
	)
}
