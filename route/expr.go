package route

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

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
		switch {
		case r.Rewrite != nil:
			number(r.Rewrite.Expr)
		case r.Aggregate != nil:
			for _, e := range r.Aggregate.Exprs {
				number(e)
			}
		default:
			for _, e := range r.Match.Exprs {
				number(e)
			}
		}
	}
}

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
	expand(&b, r.repl, name, loc)
	b.WriteString(name[loc[1]:])
	return b.String(), true
}

// expand writes the replacement parts, their groups taken from name at loc
// (FindStringSubmatchIndex).
func expand(b *strings.Builder, repl []replPart, name string, loc []int) {
	b.Write(expandBytes(nil, repl, name, loc))
}

// expandBytes appends the replacement parts to dst.
func expandBytes(dst []byte, repl []replPart, name string, loc []int) []byte {
	for _, p := range repl {
		if p.group == 0 {
			dst = append(dst, p.text...)
			continue
		}
		if 2*p.group+1 >= len(loc) || loc[2*p.group] < 0 {
			continue // a group the expression that matched does not have, or did not take
		}
		g := name[loc[2*p.group]:loc[2*p.group+1]]
		switch {
		case p.lower:
			g = strings.ToLower(g)
		case p.upper:
			g = strings.ToUpper(g)
		}
		if p.dots {
			g = strings.ReplaceAll(g, ".", "_")
		}
		dst = append(dst, g...)
	}
	return dst
}
