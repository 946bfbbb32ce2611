package route

import (
	"fmt"
	"io"
	"strings"
)

// Format writes the table as normalised configuration: one statement per
// block, members one per line, in the order they apply (what
// -check-config prints).
func (t *Table) Format(w io.Writer) error {
	var b strings.Builder
	for _, c := range t.Clusters {
		fmt.Fprintf(&b, "cluster %s\n    %s", quote(c.Name), c.Kind)
		if c.UseAll {
			b.WriteString(" useall")
		}
		if c.Kind.hashed() {
			fmt.Fprintf(&b, " replication %d", c.Replication)
			if c.Dynamic {
				b.WriteString(" dynamic")
			}
		}
		if c.FileIP {
			b.WriteString(" ip")
		}
		if s := c.Consul; s != nil {
			b.WriteString(" consul " + quote(s.Service))
			if s.Tag != "" {
				b.WriteString(" tag " + quote(s.Tag))
			}
			if s.Datacenter != "" {
				b.WriteString(" datacenter " + quote(s.Datacenter))
			}
		}
		b.WriteString("\n")
		for _, m := range c.Members {
			b.WriteString("        " + m.Addr())
			if m.HasInstance {
				b.WriteString("=" + m.Instance)
			}
			if m.Proto != "tcp" {
				b.WriteString(" proto " + m.Proto)
			}
			if m.Pickle {
				b.WriteString(" type pickle")
			}
			b.WriteString("\n")
		}
		for _, f := range c.Files {
			b.WriteString("        " + quote(f) + "\n")
		}
		b.WriteString("    ;\n")
	}
	for _, r := range t.Rules {
		if rw := r.Rewrite; rw != nil {
			fmt.Fprintf(&b, "rewrite %s\n    into %s\n    ;\n", quote(rw.Expr.Src), quote(rw.Into))
			continue
		}
		if a := r.Aggregate; a != nil {
			b.WriteString(a.definition())
			continue
		}
		m := r.Match
		b.WriteString("match")
		if m.All {
			b.WriteString(" *")
		}
		for _, e := range m.Exprs {
			b.WriteString(" " + quote(e.Src))
		}
		b.WriteString("\n")
		if m.Validate != nil {
			how := "drop"
			if m.ValidateLog {
				how = "log"
			}
			fmt.Fprintf(&b, "    validate %s else %s\n", quote(m.Validate.Src), how)
		}
		if m.RouteUsing != nil {
			fmt.Fprintf(&b, "    route using %s\n", quote(m.RouteUsing.Src))
		}
		switch {
		case m.Blackhole:
			b.WriteString("    send to blackhole\n")
		case len(m.Clusters) > 0:
			b.WriteString("    send to")
			for _, c := range m.Clusters {
				b.WriteString(" " + quote(c.Name))
			}
			b.WriteString("\n")
		}
		if m.Stop {
			b.WriteString("    stop\n")
		}
		b.WriteString("    ;\n")
	}
	for _, l := range t.Listeners {
		b.WriteString("listen\n    type " + l.Type)
		if l.Transport != "plain" || l.PEMCert != "" {
			b.WriteString(" transport " + l.Transport)
			if l.PEMCert != "" {
				b.WriteString(" ssl " + quote(l.PEMCert))
			}
		}
		b.WriteString("\n")
		for _, a := range l.Addrs {
			addr := a.Addr
			if a.Proto == "unix" {
				addr = quote(addr)
			}
			b.WriteString("        " + addr + " proto " + a.Proto + "\n")
		}
		b.WriteString("    ;\n")
	}
	for _, n := range t.Ignored {
		b.WriteString("# " + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTest writes one tab-separated line per delivery of the metric
// (line as read): metric, metric as sent, outcome, cluster or -, server
// (host:port, or the file) or -. It is polymur -config FILE -test.
func WriteTest(w io.Writer, metric string, ds []Delivery) {
	for _, d := range ds {
		if d.Outcome == InvalidLogged {
			continue
		}
		if d.Outcome == Aggregated {
			for _, n := range d.Aggregate.Names(d.Name) {
				fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\n", metric, n, Aggregated)
			}
			continue
		}
		cluster, where := "-", "-"
		if d.Cluster != nil {
			cluster = d.Cluster.Name
		}
		switch {
		case d.Server != nil:
			where = d.Server.Addr()
		case d.File != "":
			where = d.File
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", metric, d.Name, d.Outcome, cluster, where)
	}
}

// quote writes a word so that the lexer reads it back unchanged: as it is
// when it has nothing special, else in double quotes with '\\' and '"'
// escaped.
func quote(s string) string {
	if s != "" && s != "*" && !strings.ContainsAny(s, " \t\r\n;#\"") {
		return s
	}
	if s == "*" {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
