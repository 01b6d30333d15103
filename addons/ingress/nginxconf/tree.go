package nginxconf

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Directive is one nginx directive: its name, its arguments as nginx reads
// them (unquoted, unescaped) and, for a block directive, its body (non-nil,
// possibly empty).
type Directive struct {
	Name  string
	Args  []string
	Block []Directive
}

// Format writes directives as nginx.conf text. A name or an argument is written bare
// when nginx's lexer reads it back unchanged, else as a quoted string
// (Quote).
func Format(ds []Directive) string {
	var b strings.Builder
	format(&b, ds, 0)
	return b.String()
}

func format(b *strings.Builder, ds []Directive, depth int) {
	for _, d := range ds {
		b.WriteString(strings.Repeat("    ", depth))
		// A name is quoted like an argument when it must be (a map's
		// "" key): nginx's lexer reads both the same way.
		if bare(d.Name) {
			b.WriteString(d.Name)
		} else {
			b.WriteString(Quote(d.Name))
		}
		for _, a := range d.Args {
			b.WriteByte(' ')
			if bare(a) {
				b.WriteString(a)
			} else {
				b.WriteString(Quote(a))
			}
		}
		if d.Block == nil {
			b.WriteString(";\n")
			continue
		}
		b.WriteString(" {\n")
		format(b, d.Block, depth+1)
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString("}\n")
	}
}

// bare reports whether a is safe unquoted: not empty, no whitespace,
// control characters, quotes, backslashes, ";", "{", "}" or "#".
func bare(a string) bool {
	if a == "" {
		return false
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(";{}\"'\\#", r) {
			return false
		}
	}
	return true
}

// Parse reads nginx.conf text with nginx's own token rules
// (ngx_conf_read_token): words separated by whitespace, "#" comments to
// the end of the line, single- or double-quoted strings in which a
// backslash escapes the next character (\" \' \\ and \t \r \n decoded, any
// other pair kept), ";" ending a directive, "{" "}" around a block.
func Parse(text string) ([]Directive, error) {
	toks, err := lex(text)
	if err != nil {
		return nil, err
	}
	ds, rest, err := parseBlock(toks, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, errors.New(`unexpected "}"`)
	}
	return ds, nil
}

type token struct {
	s string
	// punct is ';', '{' or '}' for those; 0 for a word.
	punct byte
}

func lex(text string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, token{punct: c})
			i++
		case c == '"' || c == '\'':
			q := c
			var b strings.Builder
			i++
			closed := false
			for i < len(text) {
				ch := text[i]
				if ch == '\\' && i+1 < len(text) {
					switch n := text[i+1]; n {
					case '"', '\'', '\\':
						b.WriteByte(n)
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case 'n':
						b.WriteByte('\n')
					default:
						b.WriteByte('\\')
						b.WriteByte(n)
					}
					i += 2
					continue
				}
				i++
				if ch == q {
					closed = true
					break
				}
				b.WriteByte(ch)
			}
			if !closed {
				return nil, errors.New("unterminated string")
			}
			if i < len(text) && !strings.ContainsRune(" \t\r\n;{", rune(text[i])) {
				return nil, fmt.Errorf("unexpected %q after a quoted string", text[i])
			}
			toks = append(toks, token{s: b.String()})
		default:
			var b strings.Builder
			for i < len(text) {
				ch := text[i]
				if ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ';' || ch == '{' || ch == '}' {
					break
				}
				if ch == '\\' && i+1 < len(text) {
					b.WriteByte(text[i+1])
					i += 2
					continue
				}
				b.WriteByte(ch)
				i++
			}
			toks = append(toks, token{s: b.String()})
		}
	}
	return toks, nil
}

func parseBlock(toks []token, depth int) ([]Directive, []token, error) {
	out := []Directive{}
	for len(toks) > 0 {
		t := toks[0]
		if t.punct == '}' {
			if depth == 0 {
				return nil, nil, errors.New(`unexpected "}"`)
			}
			return out, toks[1:], nil
		}
		if t.punct != 0 {
			return nil, nil, fmt.Errorf("unexpected %q", t.punct)
		}
		d := Directive{Name: t.s}
		toks = toks[1:]
		for {
			if len(toks) == 0 {
				return nil, nil, fmt.Errorf("directive %q is not terminated", d.Name)
			}
			t = toks[0]
			toks = toks[1:]
			if t.punct == 0 {
				d.Args = append(d.Args, t.s)
				continue
			}
			if t.punct == ';' {
				break
			}
			if t.punct == '{' {
				body, rest, err := parseBlock(toks, depth+1)
				if err != nil {
					return nil, nil, err
				}
				d.Block, toks = body, rest
				break
			}
			return nil, nil, fmt.Errorf("unexpected %q in directive %q", t.punct, d.Name)
		}
		out = append(out, d)
	}
	if depth > 0 {
		return nil, nil, errors.New("unexpected end of file, expecting \"}\"")
	}
	return out, nil, nil
}

// Check parses text and reports whether it holds exactly want: every
// directive, argument and block, in order. It is what keeps a hostile
// value from reaching nginx as a directive: Render's output must pass it
// before `nginx -t` sees it.
func Check(text string, want []Directive) error {
	got, err := Parse(text)
	if err != nil {
		return fmt.Errorf("nginx.conf does not parse: %w", err)
	}
	if reflect.DeepEqual(norm(got), norm(want)) {
		return nil
	}
	return fmt.Errorf("nginx.conf does not hold the directives it was rendered from: %s", firstDiff(norm(got), norm(want), ""))
}

// norm gives every Args a non-nil value so nil and empty compare equal.
func norm(ds []Directive) []Directive {
	if ds == nil {
		return nil
	}
	out := make([]Directive, len(ds))
	for i, d := range ds {
		out[i] = Directive{Name: d.Name, Args: append([]string{}, d.Args...), Block: norm(d.Block)}
	}
	return out
}

func firstDiff(got, want []Directive, at string) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%s: missing %s %q", at, want[i].Name, want[i].Args)
		case i >= len(want):
			return fmt.Sprintf("%s: unexpected %s %q", at, got[i].Name, got[i].Args)
		}
		g, w := got[i], want[i]
		if g.Name != w.Name || !reflect.DeepEqual(g.Args, w.Args) || (g.Block == nil) != (w.Block == nil) {
			return fmt.Sprintf("%s: got %s %q, want %s %q", at, g.Name, g.Args, w.Name, w.Args)
		}
		if !reflect.DeepEqual(g.Block, w.Block) {
			return firstDiff(g.Block, w.Block, at+"/"+g.Name)
		}
	}
	return at + ": equal"
}
