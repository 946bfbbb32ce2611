// Command pgw-key creates, lists, regenerates and deletes polymur-gateway API
// keys in Consul KV. Consul is reached through the client's environment
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...); POLYMUR_GW_KEYS_PATH overrides
// the KV folder, like the gateway's -keys-path.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/internal/daemon"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes one command and returns the exit code: 0 on success, 1 on any
// failure (including a key that doesn't exist), 2 on a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, helpHeader)
		usage(stdout)
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, daemon.VersionLine("pgw-key"))
		return 0
	case "create", "list", "regen", "delete":
	default:
		fmt.Fprintf(stderr, "Not a valid command: %s\n\n", cmd)
		usage(stderr)
		return 2
	}
	if len(args) != 2 || strings.HasPrefix(args[1], "-") {
		if len(args) == 2 && !isHelp(args[1]) {
			fmt.Fprintf(stderr, "pgw-key %s %s: a key name may not start with '-'\n", cmd, args[1])
			return 2
		}
		for _, c := range commands {
			if c.name == cmd {
				fmt.Fprintf(stderr, "usage: pgw-key %s %s\n\t%s\n", c.name, c.arg, c.help)
			}
		}
		if len(args) == 2 { // asked for help
			return 0
		}
		return 2
	}
	arg := args[1]
	if cmd == "list" && arg != "names" && arg != "all" {
		fmt.Fprintf(stderr, "pgw-key list %s is invalid: want 'names' or 'all'\n", arg)
		return 2
	}
	store, err := consul.NewStore(os.Getenv("POLYMUR_GW_KEYS_PATH"), "")
	if err != nil {
		fmt.Fprintln(stderr, "pgw-key:", err)
		return 1
	}
	if err := do(store, cmd, arg, stdout); err != nil {
		switch {
		case errors.Is(err, consul.ErrExists):
			fmt.Fprintf(stderr, "Key %s already exists\n", arg)
		case errors.Is(err, consul.ErrNotFound):
			fmt.Fprintf(stderr, "Key %s doesn't exist\n", arg)
		default:
			fmt.Fprintf(stderr, "pgw-key %s: %v\n", cmd, err)
		}
		return 1
	}
	return 0
}

func do(s *consul.Store, cmd, arg string, out io.Writer) error {
	switch cmd {
	case "create":
		key, err := s.Create(arg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Successfully registered %s with key %s\n", arg, key)
	case "regen":
		key, err := s.Regen(arg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Successfully regenerated %s with key %s\n", arg, key)
	case "delete":
		if err := s.Delete(arg); err != nil {
			return err
		}
		fmt.Fprintf(out, "Successfully deleted %s\n", arg)
	case "list":
		entries, err := s.List()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if arg == "all" {
				fmt.Fprintf(out, "%s: %s\n", e.Name, e.Key)
			} else {
				fmt.Fprintln(out, e.Name)
			}
		}
	}
	return nil
}
