package iptables

import (
	"bytes"
	"fmt"
)

// lineBuffer accumulates iptables-restore lines cheaply: words are written
// straight into one reused buffer, with no per-rule string joins.
type lineBuffer struct {
	b     bytes.Buffer
	lines int
}

// Write appends one line made of words; each argument is a string or a
// []string (spliced in), separated by single spaces.
func (l *lineBuffer) Write(words ...any) {
	first := true
	put := func(w string) {
		if !first {
			l.b.WriteByte(' ')
		}
		l.b.WriteString(w)
		first = false
	}
	for _, w := range words {
		switch v := w.(type) {
		case string:
			put(v)
		case []string:
			for _, s := range v {
				put(s)
			}
		default:
			panic(fmt.Sprintf("lineBuffer.Write: unsupported %T", w))
		}
	}
	l.b.WriteByte('\n')
	l.lines++
}

// WriteChain appends the restore line that declares (and, with --noflush,
// flushes) a user chain.
func (l *lineBuffer) WriteChain(name string) {
	l.b.WriteString(":")
	l.b.WriteString(name)
	l.b.WriteString(" - [0:0]\n")
	l.lines++
}

func (l *lineBuffer) Reset()        { l.b.Reset(); l.lines = 0 }
func (l *lineBuffer) Lines() int    { return l.lines }
func (l *lineBuffer) Bytes() []byte { return l.b.Bytes() }
