package route

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxIncludeDepth bounds include nesting (and include loops).
const maxIncludeDepth = 16

// ParseFile reads a carbon-c-relay configuration (with its includes) into a
// routing table. Errors name file:line:col.
func ParseFile(path string) (*Table, error) {
	p := &parser{t: newTable()}
	if err := p.file(path, 0, token{file: path, line: 1, col: 1}); err != nil {
		return nil, err
	}
	if err := p.t.finish(); err != nil {
		return nil, err
	}
	return p.t, nil
}

// Parse reads configuration text; name is used in error positions.
func Parse(name, src string) (*Table, error) {
	p := &parser{t: newTable()}
	if err := p.text(name, src, 0); err != nil {
		return nil, err
	}
	if err := p.t.finish(); err != nil {
		return nil, err
	}
	return p.t, nil
}

type parser struct {
	t    *Table
	toks []token
	i    int
}

func (p *parser) file(path string, depth int, at token) error {
	if depth > maxIncludeDepth {
		return errAt(at, "includes nested more than %d deep (an include loop?)", maxIncludeDepth)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return errAt(at, "%v", err)
	}
	return p.text(path, string(b), depth)
}

func (p *parser) text(name, src string, depth int) error {
	toks, err := lex(name, src)
	if err != nil {
		return err
	}
	saved, savedI := p.toks, p.i
	p.toks, p.i = toks, 0
	defer func() { p.toks, p.i = saved, savedI }()
	for p.i < len(p.toks) {
		if err := p.statement(depth); err != nil {
			return err
		}
	}
	return nil
}

// next returns the next token; at the end it returns a token that says so.
func (p *parser) next() token {
	if p.i >= len(p.toks) {
		return p.endToken()
	}
	t := p.toks[p.i]
	p.i++
	return t
}

func (p *parser) peek() token {
	if p.i >= len(p.toks) {
		return p.endToken()
	}
	return p.toks[p.i]
}

// endToken stands for the end of the file, placed after its last word.
func (p *parser) endToken() token {
	if len(p.toks) == 0 {
		return token{file: "?", line: 1, col: 1}
	}
	last := p.toks[len(p.toks)-1]
	return token{file: last.file, line: last.line, col: last.col + len(last.text)}
}

func (p *parser) atEnd() bool { return p.i >= len(p.toks) }

// word is the next token, which must be a word (not ';' or the end).
func (p *parser) word(what string) (token, error) {
	t := p.next()
	if t.semi || t.text == "" && !t.quoted {
		return t, errAt(t, "expected %s", what)
	}
	return t, nil
}

func (p *parser) expect(text string) error {
	t := p.next()
	if t.quoted || t.text != text {
		return errAt(t, "expected %q, got %q", text, t.text)
	}
	return nil
}

func (p *parser) endStatement() error {
	t := p.next()
	if !t.semi {
		return errAt(t, "expected ';', got %q", t.text)
	}
	return nil
}

func (p *parser) statement(depth int) error {
	t := p.next()
	if t.semi {
		return nil // an empty statement
	}
	switch t.text {
	case "cluster":
		return p.cluster(t)
	case "match":
		return p.match(t)
	case "rewrite":
		return p.rewrite(t)
	case "include":
		return p.include(t, depth)
	case "aggregate":
		return p.aggregate(t)
	case "listen":
		return p.listen(t)
	case "statistics", "send", "logout", "logerr":
		// Parsed over and kept as a note: polymur listens on its own flags
		// and reports through -metrics-flush and the admin port.
		start := t
		for !p.atEnd() && !p.peek().semi {
			p.next()
		}
		if err := p.endStatement(); err != nil {
			return err
		}
		p.t.Ignored = append(p.t.Ignored, fmt.Sprintf("%s: %s statement ignored (polymur reports through -metrics-flush and the admin port)", start.pos(), start.text))
		return nil
	}
	return errAt(t, "unknown statement %q (want cluster, match, rewrite, include, aggregate, listen or statistics)", t.text)
}

func (p *parser) include(at token, depth int) error {
	pat, err := p.word("a file or glob after include")
	if err != nil {
		return err
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	glob := pat.text
	if !filepath.IsAbs(glob) && at.file != "" {
		glob = filepath.Join(filepath.Dir(at.file), glob)
	}
	files, err := filepath.Glob(glob)
	if err != nil {
		return errAt(pat, "include %q: %v", pat.text, err)
	}
	if len(files) == 0 {
		return errAt(pat, "include %q matches no file", pat.text)
	}
	slices.Sort(files)
	for _, f := range files {
		if err := p.file(f, depth+1, pat); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) expr(t token) (*Expr, error) {
	e, err := compileExpr(t.text)
	if err != nil {
		return nil, errAt(t, "%v", err)
	}
	return e, nil
}

func (p *parser) match(at token) error {
	m := &Match{pos: at.pos()}
	var err error
	if m.All, m.Exprs, err = p.exprs(at, "validate", "send", "route", "stop"); err != nil {
		return err
	}
	if p.peek().text == "validate" {
		p.next()
		v, err := p.word("an expression after validate")
		if err != nil {
			return err
		}
		if m.Validate, err = p.expr(v); err != nil {
			return err
		}
		if err := p.expect("else"); err != nil {
			return err
		}
		how, err := p.oneOf("validate ... else", "log", "drop")
		if err != nil {
			return err
		}
		m.ValidateLog = how.text == "log"
	}
	if p.peek().text == "route" {
		p.next()
		if err := p.expect("using"); err != nil {
			return err
		}
		v, err := p.word("an expression after route using")
		if err != nil {
			return err
		}
		if m.RouteUsing, err = p.expr(v); err != nil {
			return err
		}
	}
	if p.peek().text == "send" {
		var hole *token
		if m.dests, hole, err = p.sendTo(at); err != nil {
			return err
		}
		m.Blackhole = hole != nil
		if m.Blackhole && len(m.dests) > 0 {
			return errAt(at, "send to blackhole cannot be combined with other clusters")
		}
	} else if m.Validate == nil {
		return errAt(p.peek(), "expected send to (or validate) in match, got %q", p.peek().text)
	}
	if p.peek().text == "stop" {
		p.next()
		m.Stop = true
	}
	if m.Blackhole {
		m.Stop = true // carbon-c-relay: a blackhole match stops
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	p.t.Rules = append(p.t.Rules, Rule{Match: m})
	return nil
}

// sendTo reads "send to NAME…" up to stop or the end of the statement (at
// is the statement's keyword): the clusters named, and the blackhole word
// when one is.
func (p *parser) sendTo(at token) (dests []token, blackhole *token, err error) {
	p.next()
	if err := p.expect("to"); err != nil {
		return nil, nil, err
	}
	for !p.atEnd() && !p.peek().semi && p.peek().text != "stop" {
		c := p.next()
		if c.text == "blackhole" {
			blackhole = &c
			continue
		}
		dests = append(dests, c)
	}
	if len(dests) == 0 && blackhole == nil {
		return nil, nil, errAt(at, "send to names no cluster")
	}
	return dests, blackhole, nil
}

// oneOf reads the word after keyword, which must be one of words.
func (p *parser) oneOf(keyword string, words ...string) (token, error) {
	w, err := p.word(strings.Join(words, " or ") + " after " + keyword)
	if err != nil {
		return w, err
	}
	if !slices.Contains(words, w.text) {
		return w, errAt(w, "%s must be %s, got %q", keyword, strings.Join(words, " or "), w.text)
	}
	return w, nil
}

// exprs reads the expressions of a match or aggregate (at is its keyword)
// up to one of the keywords that end them: * (all) or at least one.
func (p *parser) exprs(at token, end ...string) (all bool, exprs []*Expr, err error) {
	for !p.atEnd() && !p.peek().semi {
		t := p.peek()
		if !t.quoted && slices.Contains(end, t.text) && len(exprs)+btoi(all) > 0 {
			break
		}
		p.next()
		if t.text == "*" && !t.quoted {
			all = true
			continue
		}
		e, err := p.expr(t)
		if err != nil {
			return false, nil, err
		}
		exprs = append(exprs, e)
	}
	if !all && len(exprs) == 0 {
		return false, nil, errAt(at, "%s needs * or at least one expression", at.text)
	}
	return all, exprs, nil
}

func (p *parser) rewrite(at token) error {
	t, err := p.word("an expression after rewrite")
	if err != nil {
		return err
	}
	e, err := p.expr(t)
	if err != nil {
		return err
	}
	if e.all {
		return errAt(t, "rewrite needs an expression, not *")
	}
	if err := p.expect("into"); err != nil {
		return err
	}
	into, err := p.word("a replacement after into")
	if err != nil {
		return err
	}
	repl, err := parseReplacement(into.text, e.re.NumSubexp())
	if err != nil {
		return errAt(into, "%v", err)
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	p.t.Rules = append(p.t.Rules, Rule{Rewrite: &Rewrite{Expr: e, Into: into.text, repl: repl, pos: at.pos()}})
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addr is a server's dial address.
func (s *Server) addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }
