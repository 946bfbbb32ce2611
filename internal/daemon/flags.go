// Package daemon holds what the polymur commands share in their mains:
// flag parsing with envy's environment mapping (with envy's traps closed),
// logger set-up from -log-level/-log-format, and the version string.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/jamiealquiza/envy"
)

// envyMu serialises the temporary swap of flag.CommandLine that envy needs:
// envy only works on the global FlagSet.
var envyMu sync.Mutex

// EnvName is the variable envy maps a flag to: -foo-bar → PREFIX_FOO_BAR.
func EnvName(prefix, flagName string) string {
	return strings.ReplaceAll(prefix+"_"+strings.ToUpper(flagName), "-", "_")
}

// ErrVersion is returned by a daemon's flag parsing once -version was
// printed: the daemon exits 0.
var ErrVersion = errors.New("version printed")

// VersionFlag defines -version (print the version and exit).
func VersionFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "Print the version, commit and Go version, and exit")
}

// ParseFlags applies PREFIX_* environment variables to fs, then parses args
// (the command line wins over the environment). envy silently keeps the
// default when a value does not parse; here that is an error naming the
// variable and its flag.
func ParseFlags(fs *flag.FlagSet, prefix string, args []string) error {
	envyMu.Lock()
	saved := flag.CommandLine
	flag.CommandLine = fs
	envy.Parse(prefix)
	flag.CommandLine = saved
	envyMu.Unlock()

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(prefix, f.Name)
		v, set := os.LookupEnv(name)
		// An empty variable sets a string flag to "" (how an environment
		// file says "-stat-addr ''": off); for other kinds it is unset.
		if set && v == "" {
			g, ok := f.Value.(flag.Getter)
			if ok {
				_, ok = g.Get().(string)
			}
			set = ok
		}
		if set {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("invalid value %q for %s (flag -%s): %v", v, name, f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.Parse(args)
}
