package plane

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReadManifests reads what `kubectl apply -f` takes: each path is a file, a
// directory (its .yaml, .yml and .json files in name order, not recursive)
// or "-" for stdin. Each file becomes one Manifest named by its path.
func ReadManifests(stdin io.Reader, paths ...string) ([]Manifest, error) {
	var out []Manifest
	for _, p := range paths {
		if p == "-" {
			if stdin == nil {
				return nil, errors.New("read standard input: no standard input")
			}
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			out = append(out, Manifest{Source: "-", Data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("the path %q does not exist", p)
			}
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		files := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("read manifest directory: %w", err)
			}
			files = files[:0]
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(p, e.Name()))
					}
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			out = append(out, Manifest{Source: f, Data: data})
		}
	}
	return out, nil
}

// Text is a Manifest of literal text, named source.
func Text(source, text string) Manifest { return Manifest{Source: source, Data: []byte(text)} }
