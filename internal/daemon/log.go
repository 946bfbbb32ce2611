package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
)

// NewLogger builds the daemon's logger from -log-level and -log-format.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid -log-level %q (want debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		// Durations are Go strings ("1.5s") in text and seconds (a number)
		// in JSON, where the handler would print nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.Float64(a.Key, a.Value.Duration().Seconds())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid -log-format %q (want text or json)", format)
}

// Set at link time by the Makefile (-ldflags -X from git describe); they
// are never written at run time.
var (
	linkVersion  string
	linkRevision string
)

// Version is the version the binary was built as: the Makefile's git
// describe, else the module version, else "(devel)".
func Version() string {
	if linkVersion != "" {
		return linkVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Revision is the VCS commit the binary was built from ("" unknown), with
// "-dirty" when the tree had changes.
func Revision() string {
	if linkRevision != "" {
		return linkRevision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

// VersionLine is what -version prints.
func VersionLine(name string) string {
	rev := Revision()
	if rev == "" {
		rev = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, %s)", name, Version(), rev, runtime.Version())
}

// CountsAttr logs counts by reason as a group of attributes
// (dropped.dest_down=3 in text, {"dropped":{"dest_down":3}} in JSON),
// sorted, rather than a Go map; "none" when empty.
func CountsAttr(key string, counts map[string]uint64) slog.Attr {
	if len(counts) == 0 {
		return slog.String(key, "none")
	}
	var attrs []any
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		attrs = append(attrs, slog.Uint64(k, counts[k]))
	}
	return slog.Group(key, attrs...)
}
