// Package progress shows how a long operation is getting on, on a terminal:
// one status line rewritten in place (what, how far, how long). When the
// output is not a terminal (a file, a pipe, CI) it writes nothing extra:
// the status never reaches a log.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Line is one status line under the operation's ordinary output.
type Line struct {
	mu     sync.Mutex
	w      io.Writer
	on     bool
	start  time.Time
	status string
	shown  bool
	drawn  string // the text on screen, while shown
	now    func() time.Time
}

// New returns a status line on w, shown only when w is a terminal.
func New(w io.Writer) *Line {
	return &Line{w: w, on: IsTerminal(w), start: time.Now(), now: time.Now}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Set replaces the status (what and how far); the time since New is added.
func (l *Line) Set(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = fmt.Sprintf(format, args...)
	l.draw()
}

// Tick redraws the status with the current elapsed time.
func (l *Line) Tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.draw()
}

// Print writes ordinary output above the status line.
func (l *Line) Print(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	io.WriteString(l.w, s) //nolint:errcheck // best effort, like the output itself
	l.draw()
}

// Done removes the status line.
func (l *Line) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	l.status = ""
}

func (l *Line) clear() {
	if l.shown {
		io.WriteString(l.w, "\r\033[K") //nolint:errcheck
		l.shown = false
	}
}

func (l *Line) draw() {
	if !l.on || l.status == "" {
		return
	}
	text := fmt.Sprintf("%s (%s)", strings.TrimSpace(l.status), l.now().Sub(l.start).Round(time.Second))
	if l.shown && text == l.drawn {
		return // unchanged: no redraw
	}
	l.clear()
	io.WriteString(l.w, text) //nolint:errcheck
	l.shown, l.drawn = true, text
}

// NewShown is New for a writer known to show it (tests of callers).
func NewShown(w io.Writer) *Line {
	l := New(w)
	l.on = true
	return l
}
