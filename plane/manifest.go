package plane

import (
	"io"

	"github.com/svcsim/svcsim/sim"
)

// ReadManifests reads what `kubectl apply -f` takes (sim.ReadFiles: files,
// directories, "-" for stdin, each bounded by sim.MaxManifestBytes). Each
// file becomes one Manifest named by its path.
func ReadManifests(stdin io.Reader, paths ...string) ([]Manifest, error) {
	files, err := sim.ReadFiles(stdin, paths...)
	if err != nil {
		return nil, err
	}
	out := make([]Manifest, len(files))
	for i, f := range files {
		out[i] = Manifest{Source: f.Source, Data: f.Data}
	}
	return out, nil
}

// Text is a Manifest of literal text, named source.
func Text(source, text string) Manifest { return Manifest{Source: source, Data: []byte(text)} }
