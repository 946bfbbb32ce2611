package main

import (
	"fmt"
	"io"
)

// commands in the order help shows them.
var commands = []struct{ name, arg, help string }{
	{"create", "NAME", "register a new key under NAME (letters, digits, '-', '_') and print it"},
	{"list", "names|all", "list key names, or names with their keys"},
	{"regen", "NAME", "replace NAME's key with a new one and print it"},
	{"delete", "NAME", "remove NAME's key"},
	{"version", "", "print the version, commit and Go version"},
}

// helpHeader opens pgw-key help (and its man page).
const helpHeader = `pgw-key: manage polymur-gateway API keys in Consul KV.

Keys live under polymur/gateway/keys/<name> (POLYMUR_GW_KEYS_PATH overrides
the folder, like the gateway's -keys-path); the gateway picks changes up
without a restart. Consul is reached through the client's environment
(CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...). Exit status: 0 on success, 1 on a
failure (also a key that does not exist), 2 on a usage error.

`

func usage(w io.Writer) {
	fmt.Fprintln(w, "Commands ('pgw-key <command>' for help):")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%s %s\t%s\n", c.name, c.arg, c.help)
	}
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }
