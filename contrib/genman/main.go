// Command genman writes the man pages of polymur's commands from their -h
// output (so the pages never disagree with the binaries): NAME.1.gz for
// each, gzipped as Debian wants them (best compression, no name or time).
//
//	go run ./contrib/genman -bin dist/stage -out dist/stage/man -version 1.2.3
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

var commands = []struct {
	name string
	x    extras
}{
	{"polymur", extras{daemon: true, envFile: "/etc/default/polymur", seeAlso: []string{"polymur-proxy", "polymur-gateway", "carbon-c-relay"}}},
	{"polymur-proxy", extras{daemon: true, envFile: "/etc/default/polymur-proxy", seeAlso: []string{"polymur-gateway", "polymur"}}},
	{"polymur-gateway", extras{daemon: true, envFile: "/etc/default/polymur-gateway", seeAlso: []string{"pgw-key", "polymur-proxy", "polymur"}}},
	{"pgw-key", extras{seeAlso: []string{"polymur-gateway"}}},
}

func main() {
	bin := flag.String("bin", "bin", "directory holding the built commands")
	out := flag.String("out", "man", "directory the pages are written to")
	version := flag.String("version", "dev", "version printed in the pages' footer")
	flag.Parse()
	if err := run(*bin, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
}

func run(bin, out, version string) error {
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" { // reproducible builds
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %v", s, err)
		}
		date = time.Unix(n, 0).UTC()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, c := range commands {
		help, err := helpOf(filepath.Join(bin, c.name))
		if err != nil {
			return err
		}
		p, err := parseHelp(c.name, help)
		if err != nil {
			return err
		}
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		w.Write([]byte(render(p, version, date, c.x)))
		w.Close()
		if err := os.WriteFile(filepath.Join(out, c.name+".1.gz"), z.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// helpOf runs "CMD -h"; flag packages exit 0 or 2 after printing it.
func helpOf(path string) (string, error) {
	var o bytes.Buffer
	cmd := exec.Command(path, "-h")
	cmd.Stdout, cmd.Stderr = &o, &o
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		return "", fmt.Errorf("%s -h: %v", path, err)
	}
	return o.String(), nil
}
