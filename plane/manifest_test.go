package plane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadManifests(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"b.yaml": "b", "a.yml": "a", "c.json": "c", "notes.txt": "x"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	single := filepath.Join(dir, "notes.txt")
	ms, err := ReadManifests(strings.NewReader("from stdin"), dir, "-", single)
	require.NoError(t, err)
	var got []string
	for _, m := range ms {
		got = append(got, filepath.Base(m.Source)+"="+string(m.Data))
	}
	// A directory gives its manifest files in name order; a named file is
	// read whatever its extension; "-" is standard input.
	require.Equal(t, []string{"a.yml=a", "b.yaml=b", "c.json=c", "-=from stdin", "notes.txt=x"}, got)

	_, err = ReadManifests(nil, filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "does not exist")
	_, err = ReadManifests(nil, "-")
	require.ErrorContains(t, err, "standard input")
}
