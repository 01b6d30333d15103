package kernellane

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

type cpioEntry struct {
	name         string
	mode         uint64
	data         string
	rmaj, rminor uint64
}

// readCpio parses a newc archive, checking the format's alignment rules.
func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		require.NoError(t, err)
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		require.Equal(t, "070701", string(b[off:off+6]), "magic at %d", off)
		mode, size, rmaj, rmin, nameLen := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(nameLen)-1])
		require.Zero(t, b[off+110+int(nameLen)-1], "name NUL-terminated")
		dataOff := align(off + 110 + int(nameLen))
		if name == "TRAILER!!!" {
			require.Zero(t, len(b)%4)
			return out
		}
		out = append(out, cpioEntry{name, mode, string(b[dataOff : dataOff+int(size)]), rmaj, rmin})
		off = align(dataOff + int(size))
	}
}

func TestCpioNewc(t *testing.T) {
	var buf bytes.Buffer
	cw := &cpioWriter{w: &buf}
	cw.Dir("dev", 0o755)
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.File("/init", 0o755, []byte("#!binary"))
	cw.File("a", 0o644, []byte("12345")) // odd sizes exercise the padding
	cw.File("empty", 0o644, nil)
	require.NoError(t, cw.Close())

	got := readCpio(t, buf.Bytes())
	require.Equal(t, []cpioEntry{
		{"dev", cpioDir | 0o755, "", 0, 0},
		{"dev/console", cpioChar | 0o600, "", 5, 1},
		{"init", cpioReg | 0o755, "#!binary", 0, 0},
		{"a", cpioReg | 0o644, "12345", 0, 0},
		{"empty", cpioReg | 0o644, "", 0, 0},
	}, got)
}
