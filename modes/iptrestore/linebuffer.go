package iptrestore

import (
	"bytes"
	"fmt"
)

// LineBuffer accumulates iptables-restore lines cheaply: words are written
// straight into one reused buffer, with no per-rule string joins. The zero
// value is ready to use.
type LineBuffer struct {
	b     bytes.Buffer
	lines int
}

// Write appends one line made of words; each argument is a string or a
// []string (spliced in), separated by single spaces.
func (l *LineBuffer) Write(words ...any) {
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
			panic(fmt.Sprintf("LineBuffer.Write: unsupported %T", w))
		}
	}
	l.b.WriteByte('\n')
	l.lines++
}

// WriteChain appends the restore line that declares (and, with --noflush,
// flushes) a user chain.
func (l *LineBuffer) WriteChain(name string) {
	l.b.WriteString(":")
	l.b.WriteString(name)
	l.b.WriteString(" - [0:0]\n")
	l.lines++
}

// Reset empties the buffer, keeping its memory.
func (l *LineBuffer) Reset() { l.b.Reset(); l.lines = 0 }

// Lines counts the lines written since the last Reset.
func (l *LineBuffer) Lines() int { return l.lines }

// Bytes returns the lines written; valid until the next change.
func (l *LineBuffer) Bytes() []byte { return l.b.Bytes() }

// Len is the number of bytes written.
func (l *LineBuffer) Len() int { return l.b.Len() }
