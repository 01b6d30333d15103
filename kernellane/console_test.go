package kernellane

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/internal/progress"
)

// TestConsoleStatus: on a terminal the console's output passes whole lines
// through the status line, which follows the boot and the tests; the
// output itself is unchanged.
func TestConsoleStatus(t *testing.T) {
	var b bytes.Buffer
	c := &console{out: &b, prefix: "[vm] ", start: time.Now(), bar: progress.NewShown(&b)}
	c.bar.Set("kernel lane: booting")
	for _, chunk := range []string{guestMarker + "init started\r\n", guestMarker + "exec /x.test\n",
		"=== RUN   TestA\n--- PASS: TestA (0.1s)\n=== RUN   TestB\n=== RUN   TestB/sub\n", "partial"} {
		_, err := c.Write([]byte(chunk))
		require.NoError(t, err)
	}
	require.Contains(t, b.String(), "kernel lane: 1 tests done, running TestB (")
	require.NotContains(t, b.String(), "partial", "a partial line waits for its end")
	c.flush()
	plain := b.String()
	for _, s := range []string{"\r\033[K"} {
		plain = strings.ReplaceAll(plain, s, "\n")
	}
	var lines []string
	for _, l := range strings.Split(plain, "\n") {
		if l != "" && !strings.HasPrefix(l, "kernel lane: ") {
			lines = append(lines, l)
		}
	}
	require.Equal(t, []string{"[vm] " + guestMarker + "init started", "[vm] " + guestMarker + "exec /x.test",
		"[vm] === RUN   TestA", "[vm] --- PASS: TestA (0.1s)", "[vm] === RUN   TestB", "[vm] === RUN   TestB/sub", "[vm] partial"}, lines)
	require.True(t, strings.HasSuffix(b.String(), "\r\033[K"), "the status line is removed at the end")
}
