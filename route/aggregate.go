package route

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Func is what an aggregate computes over a bucket's values.
type Func uint8

// Compute functions, as carbon-c-relay names them.
const (
	Sum Func = iota
	Count
	Max
	Min
	Average
	Median
	Percentile
	Variance
	Stddev
)

var funcNames = [...]string{"sum", "count", "max", "min", "average", "median", "percentile", "variance", "stddev"}

func (f Func) String() string { return funcNames[f] }

// NeedsValues reports whether f needs every value of a bucket, not only
// its count, sum, min and max.
func (f Func) NeedsValues() bool { return f >= Median }

// Timestamp says which second of its bucket an aggregate's output carries.
type Timestamp uint8

// Bucket timestamps (carbon-c-relay's default is the end).
const (
	AtEnd Timestamp = iota
	AtStart
	AtMiddle
)

var tsNames = [...]string{"end", "start", "middle"}

func (t Timestamp) String() string { return tsNames[t] }

// Aggregate is an aggregate rule: the metrics its expressions match feed
// buckets of Every seconds, emitted Expire seconds after they end; each
// Compute writes one series per distinct name its template makes.
type Aggregate struct {
	All       bool
	Exprs     []*Expr
	Every     int // seconds
	Expire    int // seconds
	Timestamp Timestamp
	Computes  []Compute
	Clusters  []*Cluster // send to; none: the output is routed from the first rule
	Stop      bool
	dests     []token
	pos       string
	key       string
}

// Compute is one "compute F write to NAME" of an aggregate.
type Compute struct {
	Func  Func
	Pct   int    // percentile's P (1..99); 50 for median
	Write string // the name template, with \1… back-references
	repl  []replPart
}

// Pos is where the aggregate is defined (file:line:col).
func (a *Aggregate) Pos() string { return a.pos }

// Key identifies the aggregate's definition (expressions, interval,
// expiry, timestamp, computes and targets): a reload keeps the state of an
// aggregate whose key did not change.
func (a *Aggregate) Key() string { return a.key }

// Names are the series names the computes write for metric name (one per
// compute, in order); nil when the aggregate does not match name.
func (a *Aggregate) Names(name string) []string {
	loc, ok := a.Match(name)
	if !ok {
		return nil
	}
	var out []string
	for c := range a.Computes {
		out = append(out, string(a.AppendName(nil, c, name, loc)))
	}
	return out
}

// Match runs the aggregate's expressions on name: ok when one matches, and
// loc, its groups (FindStringSubmatchIndex), when it has any.
func (a *Aggregate) Match(name string) (loc []int, ok bool) {
	if a.All {
		return nil, true
	}
	for _, e := range a.Exprs {
		if e.re != nil && e.re.NumSubexp() > 0 {
			if loc = e.re.FindStringSubmatchIndex(name); loc != nil {
				return loc, true
			}
			continue
		}
		if e.matches(name) {
			return nil, true
		}
	}
	return nil, false
}

// AppendName appends compute c's series name for name, matched at loc
// (Match). With groups, the name is a rewrite of the metric, as in
// carbon-c-relay: what the expression matched is replaced, the rest of the
// metric kept; without, it is the name as written.
func (a *Aggregate) AppendName(dst []byte, c int, name string, loc []int) []byte {
	if loc == nil {
		return append(dst, a.Computes[c].Write...)
	}
	dst = append(dst, name[:loc[0]]...)
	dst = expandBytes(dst, a.Computes[c].repl, name, loc)
	return append(dst, name[loc[1]:]...)
}

// AppendKey appends what the series names of name depend on (the text
// around the match and every group): two metrics with the same key feed
// the same series.
func (a *Aggregate) AppendKey(dst []byte, name string, loc []int) []byte {
	if loc == nil {
		return dst
	}
	dst = append(dst, name[:loc[0]]...)
	for g := 2; g+1 < len(loc); g += 2 {
		dst = append(dst, 0)
		if loc[g] >= 0 {
			dst = append(dst, name[loc[g]:loc[g+1]]...)
		}
	}
	dst = append(dst, 0)
	return append(dst, name[loc[1]:]...)
}

// aggregates is Match with the routing's literal memo: the expression runs
// once, its groups found in the same run.
func (rt *routing) aggregates(a *Aggregate) (loc []int, ok bool) {
	if a.All {
		return nil, true
	}
	for _, e := range a.Exprs {
		if e.re != nil && e.re.NumSubexp() > 0 {
			if !rt.mayMatch(e) {
				continue
			}
			if loc = e.re.FindStringSubmatchIndex(rt.name); loc != nil {
				return loc, true
			}
			continue
		}
		if rt.exprMatches(e) {
			return nil, true
		}
	}
	return nil, false
}

// feed appends the Aggregated delivery of the current name matched at loc:
// the aggregate's computes take it under the names AppendName gives.
func (rt *routing) feed(a *Aggregate, loc []int) {
	rt.matched = true
	rt.dst = append(rt.dst, Delivery{Name: rt.name, Outcome: Aggregated, Aggregate: a, Loc: loc})
}

// RouteOutput decides where a line an aggregate emitted goes: to its send
// to clusters, or, without them, through the rules from the first one as
// if it came from outside (carbon-c-relay's behaviour). a may belong to an
// earlier table (a reload in between): its clusters are taken by name
// from t.
func (t *Table) RouteOutput(dst []Delivery, a *Aggregate, name, rest string, live func(*Server) bool) []Delivery {
	if len(a.Clusters) == 0 {
		return t.Route(dst, name, rest, live)
	}
	rt := routing{t: t, dst: dst, name: name, rest: rest, live: live}
	for _, c := range a.Clusters {
		if cur := t.byName[c.Name]; cur != nil {
			rt.send(cur, name, name)
		}
	}
	if len(rt.dst) == len(dst) {
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Unrouted})
	}
	return rt.dst
}

func (p *parser) aggregate(at token) error {
	a := &Aggregate{pos: at.pos()}
	var err error
	if a.All, a.Exprs, err = p.exprs(at, "every"); err != nil {
		return err
	}
	if err = p.expect("every"); err != nil {
		return err
	}
	every, err := p.seconds("every", "interval")
	if err != nil {
		return err
	}
	a.Every = every
	if err := p.expect("expire"); err != nil {
		return err
	}
	if err := p.expect("after"); err != nil {
		return err
	}
	expAt := p.peek()
	if a.Expire, err = p.seconds("expire after", "expiry"); err != nil {
		return err
	}
	if a.Expire <= a.Every {
		return errAt(expAt, "expire after (%d seconds) must be greater than the interval (%d seconds)", a.Expire, a.Every)
	}
	if p.peek().text == "timestamp" && !p.peek().quoted {
		p.next()
		if err := p.expect("at"); err != nil {
			return err
		}
		w, err := p.oneOf("timestamp at", "start", "middle", "end")
		if err != nil {
			return err
		}
		a.Timestamp = Timestamp(slices.Index(tsNames[:], w.text))
		if err := p.expect("of"); err != nil {
			return err
		}
		if err := p.expect("bucket"); err != nil {
			return err
		}
	}
	groups := 0
	for _, e := range a.Exprs {
		if e.re != nil {
			groups = max(groups, e.re.NumSubexp())
		}
	}
	for p.peek().text == "compute" && !p.peek().quoted {
		p.next()
		c, err := p.compute(groups)
		if err != nil {
			return err
		}
		a.Computes = append(a.Computes, c)
	}
	if len(a.Computes) == 0 {
		return errAt(p.peek(), "expected compute in aggregate, got %q", p.peek().text)
	}
	if p.peek().text == "send" && !p.peek().quoted {
		var hole *token
		if a.dests, hole, err = p.sendTo(at); err != nil {
			return err
		}
		if hole != nil {
			return errAt(*hole, "an aggregate cannot send to blackhole (leave out its computes instead)")
		}
	}
	if p.peek().text == "stop" && !p.peek().quoted {
		if len(a.dests) == 0 {
			return errAt(p.peek(), "stop in an aggregate comes after its send to (as in carbon-c-relay)")
		}
		p.next()
		a.Stop = true
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	a.key = a.definition()
	p.t.Rules = append(p.t.Rules, Rule{Aggregate: a})
	return nil
}

// seconds reads "N seconds" (N ≥ 1).
func (p *parser) seconds(after, what string) (int, error) {
	n, err := p.word("a number of seconds after " + after)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(n.text)
	if err != nil || v <= 0 || v > 366*86400 {
		return 0, errAt(n, "the %s must be a whole number of seconds from 1 to %d, got %q", what, 366*86400, n.text)
	}
	if err := p.expect("seconds"); err != nil {
		return 0, err
	}
	return v, nil
}

// compute reads "F write to NAME" after compute.
func (p *parser) compute(groups int) (Compute, error) {
	f, err := p.word("a function after compute (sum, count, max, min, average, median, percentile<P>, variance, stddev)")
	if err != nil {
		return Compute{}, err
	}
	c := Compute{Pct: 50}
	switch name := f.text; {
	case strings.HasPrefix(name, "percentile"):
		c.Func = Percentile
		v, err := strconv.Atoi(name[len("percentile"):])
		if err != nil || v < 1 || v > 99 {
			return Compute{}, errAt(f, "percentile<P>: P must be a whole number from 1 to 99, got %q", name)
		}
		c.Pct = v
	default:
		found := false
		for i, n := range funcNames {
			if n == name && Func(i) != Percentile {
				c.Func, found = Func(i), true
			}
		}
		if !found {
			return Compute{}, errAt(f, "unknown compute function %q (want sum, count, max, min, average, median, percentile<P>, variance or stddev)", name)
		}
	}
	if err := p.expect("write"); err != nil {
		return Compute{}, err
	}
	if err := p.expect("to"); err != nil {
		return Compute{}, err
	}
	w, err := p.word("a metric name after write to")
	if err != nil {
		return Compute{}, err
	}
	if c.repl, err = parseReplacement(w.text, groups); err != nil {
		return Compute{}, errAt(w, "%v", err)
	}
	c.Write = w.text
	return c, nil
}

// definition is the aggregate as configuration text (its Key).
func (a *Aggregate) definition() string {
	var b strings.Builder
	b.WriteString("aggregate")
	if a.All {
		b.WriteString(" *")
	}
	for _, e := range a.Exprs {
		b.WriteString(" " + quote(e.Src))
	}
	fmt.Fprintf(&b, "\n    every %d seconds\n    expire after %d seconds\n    timestamp at %s of bucket\n", a.Every, a.Expire, a.Timestamp)
	for _, c := range a.Computes {
		f := c.Func.String()
		if c.Func == Percentile {
			f += strconv.Itoa(c.Pct)
		}
		fmt.Fprintf(&b, "    compute %s write to %s\n", f, quote(c.Write))
	}
	if len(a.dests) > 0 {
		b.WriteString("    send to")
		for _, d := range a.dests {
			b.WriteString(" " + quote(d.text))
		}
		b.WriteString("\n")
	}
	if a.Stop {
		b.WriteString("    stop\n")
	}
	b.WriteString("    ;\n")
	return b.String()
}
