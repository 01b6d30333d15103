package progress

import (
	"bytes"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	if l.on {
		t.Fatal("a buffer is not a terminal")
	}
	l.Set("booting")
	l.Print("line 1\n")
	l.Done()
	if b.String() != "line 1\n" {
		t.Errorf("not a terminal: %q, want the output alone", b.String())
	}

	b.Reset()
	at := time.Unix(0, 0)
	l = &Line{w: &b, on: true, start: at, now: func() time.Time { return at }}
	l.Set("starting: %d of %d nodes", 1, 3)
	l.Tick() // nothing changed: no redraw
	at = at.Add(2 * time.Second)
	l.Tick()
	l.Print("node1 ready\n")
	l.Done()
	want := "starting: 1 of 3 nodes (0s)" + "\r\033[K" + "starting: 1 of 3 nodes (2s)" +
		"\r\033[K" + "node1 ready\n" + "starting: 1 of 3 nodes (2s)" + "\r\033[K"
	if b.String() != want {
		t.Errorf("terminal:\n%q\nwant\n%q", b.String(), want)
	}
}
