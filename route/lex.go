package route

import (
	"fmt"
	"strings"
)

// token is one word of a configuration file with its place.
type token struct {
	text      string
	file      string
	line, col int
	semi      bool // the statement terminator ';'
	quoted    bool
}

func (t token) pos() string { return fmt.Sprintf("%s:%d:%d", t.file, t.line, t.col) }

// Error is a configuration error at a place: file:line:col: message.
type Error struct {
	Pos string
	Msg string
}

func (e *Error) Error() string { return e.Pos + ": " + e.Msg }

func errAt(t token, format string, args ...any) error {
	return &Error{Pos: t.pos(), Msg: fmt.Sprintf(format, args...)}
}

// lex splits carbon-c-relay configuration text into words: whitespace
// separates them, '#' starts a comment to the end of the line, ';' ends a
// statement (also glued to a word), and "double quotes" keep a word with
// spaces, ';' or '#' in it (backslash escapes the next character).
func lex(file, src string) ([]token, error) {
	var out []token
	line, col := 1, 1
	i := 0
	adv := func() {
		if src[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i++
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n' || c == ' ' || c == '\t' || c == '\r':
			adv()
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				adv()
			}
		case c == ';':
			out = append(out, token{text: ";", file: file, line: line, col: col, semi: true})
			adv()
		case c == '"':
			t := token{file: file, line: line, col: col, quoted: true}
			adv()
			var b strings.Builder
			closed := false
			for i < len(src) {
				if src[i] == '\\' && i+1 < len(src) {
					adv()
					b.WriteByte(src[i])
					adv()
					continue
				}
				if src[i] == '"' {
					adv()
					closed = true
					break
				}
				b.WriteByte(src[i])
				adv()
			}
			if !closed {
				return nil, errAt(t, "unterminated quoted string")
			}
			t.text = b.String()
			out = append(out, t)
		default:
			t := token{file: file, line: line, col: col}
			start := i
			for i < len(src) {
				c := src[i]
				if c == '\\' && i+1 < len(src) && src[i+1] != '\n' {
					adv() // a backslash keeps the next character in the word ("\ " is a space)
					adv()
					continue
				}
				if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';' || c == '#' {
					break
				}
				adv()
			}
			t.text = src[start:i]
			out = append(out, t)
		}
	}
	return out, nil
}
