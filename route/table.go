// Package route is polymur's routing table: clusters, match rules and
// rewrites read from a carbon-c-relay configuration, placing each metric
// exactly where carbon-c-relay would (carbon_ch follows carbon where the
// two differ). A Table is immutable once built and safe for concurrent use;
// it decides deliveries and leaves the sending to the destinations.
package route

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/polymur/polymur/ring"
)

// Kind is a cluster's type.
type Kind uint8

// Cluster kinds, as carbon-c-relay names them.
const (
	Forward Kind = iota
	AnyOf
	Failover
	CarbonCH
	FNV1aCH
	JumpFNV1aCH
	File
)

var kindNames = [...]string{"forward", "any_of", "failover", "carbon_ch", "fnv1a_ch", "jump_fnv1a_ch", "file"}

func (k Kind) String() string { return kindNames[k] }

func (k Kind) hashed() bool { return k == CarbonCH || k == FNV1aCH || k == JumpFNV1aCH }

// Server is one destination (host:port); one server however many clusters
// name it.
type Server struct {
	Host        string
	Port        int
	Instance    string
	HasInstance bool
	Proto       string // tcp (udp comes with the protocols work)
	Transport   string // plain
	TLS         string // "", ssl or mtls
	Cert, Key   string
	pos         token
	addrText    string // host:port, made once
}

// Addr is host:port.
func (s *Server) Addr() string {
	if s.addrText == "" {
		return s.addr()
	}
	return s.addrText
}

// Cluster is a named set of members and how a metric picks among them.
type Cluster struct {
	Name        string
	Kind        Kind
	Replication int
	Dynamic     bool
	UseAll      bool
	FileIP      bool
	Members     []*Server
	Files       []string
	pos         string
	replPos     token

	carbon *ring.Carbon
	fnv    *ring.FNV1a
	jump   *ring.Jump
}

// Expr is a match or rewrite expression: POSIX extended (leftmost-longest,
// what carbon-c-relay's regcomp(REG_EXTENDED) accepts), '*' for everything,
// and literal prefixes or substrings matched without the regex engine.
type Expr struct {
	Src    string
	all    bool
	re     *regexp.Regexp
	prefix string // ^literal: strings.HasPrefix
	substr string // literal: strings.Contains
	lit    bool   // prefix or substr applies
	// For a real regex: literal text any match needs (a prefix when
	// anchored, substrings anywhere), checked before the regex engine runs.
	needPrefix string
	needSub    []string
	// needIDs number needPrefix (as a prefix test) and needSub (as
	// substring tests) in the table's literal list, so that one routing
	// tests each distinct literal once however many rules need it.
	needIDs []int
}

// Match is a match rule.
type Match struct {
	All         bool
	Exprs       []*Expr
	Validate    *Expr
	ValidateLog bool
	RouteUsing  *Expr
	Clusters    []*Cluster
	Blackhole   bool
	Stop        bool
	dests       []token
	pos         string
}

// Rewrite is a rewrite rule.
type Rewrite struct {
	Expr *Expr
	Into string
	repl []replPart
	pos  string
}

// Rule is one rule in order: a match or a rewrite.
type Rule struct {
	Match   *Match
	Rewrite *Rewrite
}

// Table is a parsed, checked configuration.
type Table struct {
	Clusters  []*Cluster
	Rules     []Rule
	Servers   []*Server // every distinct host:port, in order of appearance
	Ignored   []string  // statements read and not applied (listen, statistics)
	byName    map[string]*Cluster
	byAddr    map[string]*Server
	index     []*prefixIndex // per rule: the prefix index covering it, or nil
	needsRest bool
	lits      []literalTest // distinct required literals of the rules' regexes
}

// literalTest is one required literal: a prefix of the name, or a
// substring of it.
type literalTest struct {
	s      string
	prefix bool
}

func (l literalTest) holds(name string) bool {
	if l.prefix {
		return strings.HasPrefix(name, l.s)
	}
	return strings.Contains(name, l.s)
}

// numberLiterals gives every required literal of the rules' expressions an
// id in t.lits.
func (t *Table) numberLiterals() {
	ids := map[literalTest]int{}
	id := func(l literalTest) int {
		if i, ok := ids[l]; ok {
			return i
		}
		ids[l] = len(t.lits)
		t.lits = append(t.lits, l)
		return len(t.lits) - 1
	}
	number := func(e *Expr) {
		if e == nil || e.re == nil || e.lit {
			return
		}
		e.needIDs = e.needIDs[:0]
		if e.needPrefix != "" {
			e.needIDs = append(e.needIDs, id(literalTest{e.needPrefix, true}))
		}
		for _, s := range e.needSub {
			e.needIDs = append(e.needIDs, id(literalTest{s, false}))
		}
	}
	for _, r := range t.Rules {
		if r.Rewrite != nil {
			number(r.Rewrite.Expr)
			continue
		}
		for _, e := range r.Match.Exprs {
			number(e)
		}
	}
}

func newTable() *Table {
	return &Table{byName: map[string]*Cluster{}, byAddr: map[string]*Server{}}
}

// addCluster registers c, merging its members with servers already known
// (a server keeps its first instance: another one is an error, as in
// carbon-c-relay).
func (t *Table) addCluster(c *Cluster, at token) error {
	for i, m := range c.Members {
		if old, ok := t.byAddr[m.addr()]; ok {
			if old.HasInstance != m.HasInstance || old.Instance != m.Instance {
				return errAt(m.pos, "cannot set instance %q for server %s: it was defined with instance %q at %s", m.Instance, m.addr(), old.Instance, old.pos.pos())
			}
			c.Members[i] = old
			continue
		}
		m.addrText = m.addr()
		t.byAddr[m.addr()] = m
		t.Servers = append(t.Servers, m)
	}
	for i, m := range c.Members {
		for _, o := range c.Members[:i] {
			if o == m {
				return errAt(m.pos, "server %s is twice in cluster %s", m.addr(), c.Name)
			}
			if c.Kind == CarbonCH && o.Host == m.Host && o.Instance == m.Instance && o.HasInstance == m.HasInstance {
				return errAt(m.pos, "%s and %s have the same host and instance in carbon_ch cluster %s: they would hash identically (give them distinct instances)", o.addr(), m.addr(), c.Name)
			}
		}
	}
	if c.Kind.hashed() && c.Replication > 1 {
		limit, what := len(c.Members), "members"
		if c.Kind == CarbonCH {
			hosts := map[string]bool{}
			for _, m := range c.Members {
				hosts[m.Host] = true
			}
			limit, what = len(hosts), "distinct hosts"
		}
		if c.Replication > limit {
			return errAt(c.replPos, "replication %d in cluster %s exceeds its %d %s", c.Replication, c.Name, limit, what)
		}
	}
	members := make([]ring.Member, len(c.Members))
	keys := make([]string, len(c.Members))
	for i, m := range c.Members {
		members[i] = ring.Member{Host: m.Host, Port: m.Port, Instance: m.Instance, HasInstance: m.HasInstance}
		if m.HasInstance {
			keys[i] = "('" + m.Host + "', '" + m.Instance + "')"
		} else {
			keys[i] = "('" + m.Host + "', None)"
		}
	}
	switch c.Kind {
	case CarbonCH:
		c.carbon = ring.NewCarbon(keys)
	case FNV1aCH:
		c.fnv = ring.NewFNV1a(members)
	case JumpFNV1aCH:
		c.jump = ring.NewJump(members)
	}
	t.byName[c.Name] = c
	t.Clusters = append(t.Clusters, c)
	return nil
}

// finish resolves cluster names in matches.
func (t *Table) finish() error {
	for _, r := range t.Rules {
		if r.Match == nil {
			continue
		}
		for _, d := range r.Match.dests {
			c, ok := t.byName[d.text]
			if !ok {
				return errAt(d, "send to unknown cluster %q", d.text)
			}
			r.Match.Clusters = append(r.Match.Clusters, c)
		}
	}
	t.buildIndexes()
	t.numberLiterals()
	for _, r := range t.Rules {
		if r.Match != nil && r.Match.Validate != nil {
			t.needsRest = true
		}
	}
	return nil
}

// NeedsRest reports whether a rule looks at what follows the metric name
// (a validate clause); when none does, Route may be given "" for it.
func (t *Table) NeedsRest() bool { return t.needsRest }

// Cluster returns the cluster called name.
func (t *Table) Cluster(name string) *Cluster { return t.byName[name] }

// compileExpr compiles a match or rewrite expression.
func compileExpr(src string) (*Expr, error) {
	if src == "*" {
		return &Expr{Src: src, all: true}, nil
	}
	tr, err := translateERE(src)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %v", src, err)
	}
	re, err := regexp.CompilePOSIX(tr)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %v", src, err)
	}
	e := &Expr{Src: src, re: re}
	// Most real expressions are literal prefixes (^foo\.) or substrings:
	// decided without the regex engine, as carbon-c-relay does.
	if lit, ok := literal(strings.TrimPrefix(src, "^")); ok {
		e.lit = true
		if strings.HasPrefix(src, "^") {
			e.prefix = lit
		} else {
			e.substr = lit
		}
		return e, nil
	}
	e.needPrefix, e.needSub = required(tr)
	return e, nil
}

// required finds literal text every match of an extended regex must
// contain: the literal run right after a leading ^ (a prefix of the name)
// and the literal pieces of a top-level concatenation. Cheap string tests
// on them rule most names out before the regex engine runs.
func required(src string) (prefix string, subs []string) {
	re, err := syntax.Parse(src, syntax.POSIX)
	if err != nil {
		return "", nil
	}
	re = re.Simplify()
	parts := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		parts = re.Sub
	}
	anchored := len(parts) > 0 && (parts[0].Op == syntax.OpBeginText || parts[0].Op == syntax.OpBeginLine)
	for i, p := range parts {
		if p.Op != syntax.OpLiteral || p.Flags&syntax.FoldCase != 0 {
			continue
		}
		s := string(p.Rune)
		if anchored && i == 1 {
			prefix = s
			continue
		}
		if len(s) >= 2 {
			subs = append(subs, s)
		}
	}
	// Later pieces are usually the more specific ones (a name's tail
	// varies most): test them first.
	slices.Reverse(subs)
	return prefix, subs
}

// translateERE turns glibc's extended-regex escapes into Go's POSIX syntax:
// a backslash before an ordinary character (such as "\ ") is that
// character, \w \W \s \S are their classes; the GNU word-boundary
// operators have no equivalent and are refused.
func translateERE(src string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '\\' || i+1 >= len(src) {
			b.WriteByte(c)
			continue
		}
		i++
		n := src[i]
		switch {
		case n == 'w':
			b.WriteString("[[:alnum:]_]")
		case n == 'W':
			b.WriteString("[^[:alnum:]_]")
		case n == 's':
			b.WriteString("[[:space:]]")
		case n == 'S':
			b.WriteString("[^[:space:]]")
		case n == 'b' || n == 'B' || n == '<' || n == '>' || n == '`' || n == '\'':
			return "", fmt.Errorf("the GNU operator \\%c has no equivalent here", n)
		case n >= '0' && n <= '9':
			return "", fmt.Errorf("back-references (\\%c) are not part of extended regular expressions", n)
		case n >= 'a' && n <= 'z' || n >= 'A' && n <= 'Z':
			b.WriteByte(n) // an ordinary letter, escaped for nothing
		default:
			b.WriteString(regexp.QuoteMeta(string(n)))
		}
	}
	return b.String(), nil
}

// literal unescapes s when it is a plain string (backslash escapes of
// punctuation allowed); ok is false when it has regex operators.
func literal(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return "", false
			}
			n := s[i+1]
			if n >= 'a' && n <= 'z' || n >= 'A' && n <= 'Z' || n >= '0' && n <= '9' {
				return "", false // \d, \w, back-references...
			}
			b.WriteByte(n)
			i++
		case '.', '[', ']', '(', ')', '*', '+', '?', '{', '}', '|', '^', '$':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), b.Len() > 0
}

// matches reports whether e matches name.
func (e *Expr) matches(name string) bool {
	switch {
	case e.all:
		return true
	case e.lit && e.prefix != "":
		return strings.HasPrefix(name, e.prefix)
	case e.lit:
		return strings.Contains(name, e.substr)
	}
	if !e.mayMatch(name) {
		return false
	}
	return e.re.MatchString(name)
}

// mayMatch applies the required-literal tests.
func (e *Expr) mayMatch(name string) bool {
	if e.needPrefix != "" && !strings.HasPrefix(name, e.needPrefix) {
		return false
	}
	for _, s := range e.needSub {
		if !strings.Contains(name, s) {
			return false
		}
	}
	return true
}

// replPart is a piece of a rewrite replacement: literal text, or capture
// group N with carbon-c-relay's transforms (\_ lower, \^ upper, \. dots to
// underscores).
type replPart struct {
	text         string
	group        int // 0: text
	lower, upper bool
	dots         bool
}

func parseReplacement(s string, groups int) ([]replPart, error) {
	var parts []replPart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			lit.WriteByte(s[i])
			continue
		}
		j := i + 1
		var p replPart
		for j < len(s) {
			switch s[j] {
			case '_':
				p.lower = true
			case '^':
				p.upper = true
			case '.':
				p.dots = true
			default:
				goto digit
			}
			j++
		}
	digit:
		if j < len(s) && s[j] >= '1' && s[j] <= '9' {
			p.group = int(s[j] - '0')
			if p.group > groups {
				return nil, fmt.Errorf("replacement %q refers to \\%d but the expression has %d groups", s, p.group, groups)
			}
			if lit.Len() > 0 {
				parts = append(parts, replPart{text: lit.String()})
				lit.Reset()
			}
			parts = append(parts, p)
			i = j
			continue
		}
		lit.WriteByte(s[i]) // not a back-reference: kept as written
	}
	if lit.Len() > 0 {
		parts = append(parts, replPart{text: lit.String()})
	}
	return parts, nil
}

// apply rewrites name when r matches it: the matched part is replaced.
func (r *Rewrite) apply(name string) (string, bool) {
	if !r.Expr.mayMatch(name) {
		return name, false
	}
	loc := r.Expr.re.FindStringSubmatchIndex(name)
	if loc == nil {
		return name, false
	}
	var b strings.Builder
	b.WriteString(name[:loc[0]])
	for _, p := range r.repl {
		if p.group == 0 {
			b.WriteString(p.text)
			continue
		}
		s, e := loc[2*p.group], loc[2*p.group+1]
		if s < 0 {
			continue
		}
		g := name[s:e]
		switch {
		case p.lower:
			g = strings.ToLower(g)
		case p.upper:
			g = strings.ToUpper(g)
		}
		if p.dots {
			g = strings.ReplaceAll(g, ".", "_")
		}
		b.WriteString(g)
	}
	b.WriteString(name[loc[1]:])
	return b.String(), true
}

// Outcome of one delivery decision.
const (
	Send      = "send"
	Blackhole = "blackhole"
	Unrouted  = "unrouted"
	Invalid   = "invalid" // a validate clause failed with else drop
	// InvalidLogged: a validate clause failed with else log (the rule is
	// skipped and the line logged; -test does not print it).
	InvalidLogged = "invalid_logged"
)

// Delivery is one place a metric goes: its name as sent, the outcome, the
// cluster and the server (or file) — nil for blackhole and unrouted.
type Delivery struct {
	Name    string
	Outcome string
	Cluster *Cluster
	Server  *Server
	File    string
}

// Route decides where the metric name (with rest, the line after the name,
// for validate clauses) goes, appending to dst. live, when not nil, says
// whether a server is up (failover, any_of and dynamic hash clusters skip
// the others).
func (t *Table) Route(dst []Delivery, name, rest string, live func(*Server) bool) []Delivery {
	rt := routing{t: t, dst: dst, name: name, rest: rest, live: live}
	for ri := 0; ri < len(t.Rules); {
		r := t.Rules[ri]
		if rw := r.Rewrite; rw != nil {
			if rt.mayRewrite(rw) {
				var changed bool
				if rt.name, changed = rw.apply(rt.name); changed {
					rt.known, rt.holds = 0, 0 // a new name: literals tested afresh
				}
			}
			ri++
			continue
		}
		if x := t.index[ri]; x != nil && ri == x.start {
			// A run with a prefix index: one trie walk finds the indexed
			// rules that match; they and the others are taken in order.
			hits := x.hits(rt.name)
			oi := 0
			for b := 0; b <= x.n; b++ {
				next := x.end
				if b < x.n {
					if hits[b>>6]&(1<<(b&63)) == 0 {
						continue
					}
					next = x.rules[b]
				}
				for ; oi < len(x.others) && x.others[oi] < next; oi++ {
					if m := t.Rules[x.others[oi]].Match; rt.matches(m) && rt.apply(m) {
						return rt.dst
					}
				}
				if b < x.n && rt.apply(t.Rules[next].Match) {
					return rt.dst
				}
			}
			ri = x.end
			continue
		}
		if m := r.Match; rt.matches(m) && rt.apply(m) {
			return rt.dst
		}
		ri++
	}
	if !rt.matched {
		rt.dst = append(rt.dst, Delivery{Name: rt.name, Outcome: Unrouted})
	}
	return rt.dst
}

// routing is one metric's way through the rules.
type routing struct {
	t          *Table
	dst        []Delivery
	name, rest string
	live       func(*Server) bool
	matched    bool
	idx        [8]int
	// known and holds memoise the table's first 64 required literals for
	// the current name (reset when a rewrite changes it).
	known, holds uint64
}

// matches reports whether one of m's expressions matches the name.
func (rt *routing) matches(m *Match) bool {
	if m.All {
		return true
	}
	for _, e := range m.Exprs {
		if rt.exprMatches(e) {
			return true
		}
	}
	return false
}

func (rt *routing) exprMatches(e *Expr) bool {
	if e.re == nil || e.lit || e.all {
		return e.matches(rt.name)
	}
	for _, id := range e.needIDs {
		if !rt.literal(id) {
			return false
		}
	}
	return e.re.MatchString(rt.name)
}

// literal tests required literal id on the name, once per name.
func (rt *routing) literal(id int) bool {
	if id >= 64 {
		return rt.t.lits[id].holds(rt.name)
	}
	bit := uint64(1) << id
	if rt.known&bit == 0 {
		rt.known |= bit
		if rt.t.lits[id].holds(rt.name) {
			rt.holds |= bit
		}
	}
	return rt.holds&bit != 0
}

// mayRewrite applies rw's required-literal tests through the memo.
func (rt *routing) mayRewrite(rw *Rewrite) bool {
	for _, id := range rw.Expr.needIDs {
		if !rt.literal(id) {
			return false
		}
	}
	return true
}

// apply carries out a match rule that matched; it reports whether routing
// stops here.
func (rt *routing) apply(m *Match) (stop bool) {
	rt.matched = true
	name := rt.name
	if m.Validate != nil && !m.Validate.matches(rt.rest) {
		// The rule is aborted (carbon-c-relay goes on with the next one);
		// "else drop" is a counted outcome, "else log" a log line. A
		// validate-only rule (a global check, no destinations) that fails
		// with drop stops the metric.
		if !m.ValidateLog {
			rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Invalid})
			return len(m.Clusters) == 0 && !m.Blackhole
		}
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: InvalidLogged})
		return false
	}
	if m.Blackhole {
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Blackhole})
		return true
	}
	key := name
	if m.RouteUsing != nil {
		key = routeKey(m.RouteUsing, name)
	}
	for _, c := range m.Clusters {
		if c.Kind == File {
			for _, f := range c.Files {
				rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Send, Cluster: c, File: f})
			}
			continue
		}
		for _, i := range c.pick(rt.idx[:0], key, rt.live) {
			rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Send, Cluster: c, Server: c.Members[i]})
		}
	}
	return m.Stop
}

// routeKey is the hash key a "route using" expression makes of name: its
// first capture group when it has one, else what it matches (the whole name
// when it does not match).
func routeKey(e *Expr, name string) string {
	if e.all || e.re == nil {
		return name
	}
	loc := e.re.FindStringSubmatchIndex(name)
	switch {
	case loc == nil:
		return name
	case len(loc) >= 4 && loc[2] >= 0:
		return name[loc[2]:loc[3]]
	}
	return name[loc[0]:loc[1]]
}

// pick appends the indexes of the members that get key.
func (c *Cluster) pick(dst []int, key string, live func(*Server) bool) []int {
	up := func(i int) bool { return live == nil || live(c.Members[i]) }
	n := len(c.Members)
	switch c.Kind {
	case Forward:
		for i := range n {
			dst = append(dst, i)
		}
	case AnyOf:
		start := int(ring.FNV1a32([]byte(key)) % uint32(n))
		for k := range n {
			if i := (start + k) % n; up(i) {
				return append(dst, i)
			}
		}
	case Failover:
		for i := range n {
			if up(i) {
				return append(dst, i)
			}
		}
	case CarbonCH:
		var alive func(int) bool
		if c.Dynamic && live != nil {
			alive = up
		}
		dst = c.carbon.PickCarbon(dst, []byte(key), c.Replication, func(i int) string { return c.Members[i].Host }, alive)
	case FNV1aCH:
		var alive func(int) bool
		if c.Dynamic && live != nil {
			alive = up
		}
		dst = c.fnv.Pick(dst, []byte(key), c.Replication, alive)
	case JumpFNV1aCH:
		dst = c.jump.Pick(dst, []byte(key), c.Replication)
	}
	return dst
}
