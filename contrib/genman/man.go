package main

import (
	"fmt"
	"strings"
	"time"
)

// page is what a command's -h says, taken apart.
type page struct {
	name, summary string
	description   []string // paragraphs
	flags         []flagDoc
	commands      []flagDoc // pgw-key's subcommands
}

type flagDoc struct{ name, arg, usage string }

// parseHelp reads the -h output of a polymur command: "NAME: summary." and
// paragraphs, then "Flags:" and flag.PrintDefaults' list; or pgw-key's
// "Commands" list of tab-separated "name args<TAB>help" lines.
func parseHelp(name, help string) (*page, error) {
	p := &page{name: name}
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return nil, fmt.Errorf("%s -h printed nothing", name)
	}
	i := 0
	if head, rest, ok := strings.Cut(lines[0], ": "); ok && head == name {
		p.summary = strings.TrimSuffix(strings.TrimSpace(rest), ".")
		i = 1
	}
	var para []string
	flush := func() {
		if len(para) > 0 {
			p.description = append(p.description, strings.Join(para, " "))
			para = nil
		}
	}
	for ; i < len(lines); i++ {
		l := lines[i]
		switch {
		case l == "Flags:":
			flush()
			f, err := parseFlags(lines[i+1:])
			p.flags = f
			return p, err
		case strings.HasPrefix(l, "Commands"):
			flush()
			for _, c := range lines[i+1:] {
				fields := strings.Split(strings.TrimPrefix(c, "\t"), "\t")
				if len(fields) != 2 {
					return nil, fmt.Errorf("%s -h: command line %q is not 'name args<TAB>help'", name, c)
				}
				n, arg, _ := strings.Cut(strings.TrimSpace(fields[0]), " ")
				p.commands = append(p.commands, flagDoc{n, arg, fields[1]})
			}
			return p, nil
		case strings.TrimSpace(l) == "":
			flush()
		default:
			para = append(para, strings.TrimSpace(l))
		}
	}
	flush()
	return p, nil
}

// parseFlags reads flag.PrintDefaults: "  -name type" (or "  -x\tusage" for
// one-letter flags) followed by "    \tusage" lines.
func parseFlags(lines []string) ([]flagDoc, error) {
	var out []flagDoc
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "  -"):
			decl := strings.TrimPrefix(l, "  -")
			var f flagDoc
			if n, u, ok := strings.Cut(decl, "\t"); ok {
				f.name, f.usage = n, strings.TrimSpace(u)
			} else {
				f.name, f.arg, _ = strings.Cut(decl, " ")
			}
			out = append(out, f)
		case strings.HasPrefix(l, "    \t") && len(out) > 0:
			f := &out[len(out)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(l))
		case strings.TrimSpace(l) == "":
		default:
			return nil, fmt.Errorf("flag list: unexpected line %q", l)
		}
	}
	return out, nil
}

// roff escapes text for a man page: backslashes, and a line starting with a
// control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// section 1 extras per command: what a daemon does on signals, where its
// packaged files are.
type extras struct {
	daemon  bool
	envFile string
	seeAlso []string
}

// render writes the page as man(7) source.
func render(p *page, version string, date time.Time, x extras) string {
	var b strings.Builder
	up := strings.ToUpper(p.name)
	fmt.Fprintf(&b, ".TH %s 1 %q %q \"polymur manual\"\n", up, date.Format("2006-01-02"), "polymur "+version)
	b.WriteString(".ad l\n") // long flag names and URLs: no justification
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(p.name), roff(p.summary))
	b.WriteString(".SH SYNOPSIS\n")
	if len(p.commands) > 0 {
		fmt.Fprintf(&b, ".B %s\n.I command\n.RI [ argument ]\n", roff(p.name))
	} else {
		fmt.Fprintf(&b, ".B %s\n.RI [ flags ]\n", roff(p.name))
	}
	if len(p.description) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		for i, d := range p.description {
			if i > 0 {
				b.WriteString(".PP\n")
			}
			b.WriteString(roff(d) + "\n")
		}
	}
	if len(p.commands) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, c := range p.commands {
			term(&b, "", c.name, c.arg)
			fmt.Fprintf(&b, "\n%s\n", roff(c.usage))
		}
	}
	if len(p.flags) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, f := range p.flags {
			term(&b, `\-`, f.name, f.arg)
			fmt.Fprintf(&b, "\n%s\n", roff(f.usage))
		}
		b.WriteString(".SH ENVIRONMENT\nEvery flag can also be set by the environment variable shown in brackets after its description; a flag given on the command line wins. An invalid value fails the start naming the flag or variable.\n")
	}
	if x.daemon {
		b.WriteString(".SH SIGNALS\n.TP\n.B SIGTERM, SIGINT\nStop taking input, deliver or spool what is queued (for at most \\-drain\\-timeout), then exit.\n")
		b.WriteString(".TP\n.B SIGHUP\nRe-read what can be re-read (the \\-config file, TLS certificates); otherwise logged and ignored.\n")
	}
	if x.envFile != "" {
		fmt.Fprintf(&b, ".SH FILES\n.TP\n.I %s\nEnvironment of the packaged systemd unit %s.service.\n", roff(x.envFile), roff(p.name))
	}
	if len(x.seeAlso) > 0 {
		refs := make([]string, len(x.seeAlso))
		for i, s := range x.seeAlso {
			refs[i] = ".BR " + roff(s) + " (1)"
		}
		b.WriteString(".SH SEE ALSO\n" + strings.Join(refs, " ,\n") + "\n")
	}
	return b.String()
}

// term starts a .TP entry: the name in bold, its argument in italics.
func term(b *strings.Builder, dash, name, arg string) {
	if arg == "" {
		fmt.Fprintf(b, ".TP\n.B %s%s", dash, roff(name))
		return
	}
	fmt.Fprintf(b, ".TP\n.BI %s%s \" %s\"", dash, roff(name), roff(arg))
}
