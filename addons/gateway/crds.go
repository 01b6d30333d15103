package gateway

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
)

// Module is the Gateway API module whose CRDs and types svcsim uses.
const Module = "sigs.k8s.io/gateway-api"

// PinnedVersion is go.mod's pin of Module (a unit test holds them equal):
// test binaries carry no module data to read it from.
const PinnedVersion = "v1.6.3"

// ModuleVersion is the Gateway API version this binary was built with,
// PinnedVersion when the build carries no module data.
func ModuleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == Module {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return PinnedVersion
}

// CRDs returns the standard channel's CustomResourceDefinitions as the
// pinned module ships them (config/crd/standard, read from the Go module
// cache, where `make deps` and every build put it; the
// ValidatingAdmissionPolicy file is left out), as one YAML stream.
func CRDs() ([]byte, error) {
	dir, err := moduleDir(ModuleVersion())
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out bytes.Buffer
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "_vap_") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("gateway API CRDs: %w", err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("gateway API CRDs: none under %s/config/crd/standard", dir)
	}
	return out.Bytes(), nil
}

// moduleDir finds the module's directory in the module cache: $GOMODCACHE,
// else $GOPATH/pkg/mod, ~/go/pkg/mod, the user's passwd home's
// go/pkg/mod or $SUDO_USER's. (Not `go env`: it writes ~/.config.)
func moduleDir(version string) (string, error) {
	var caches []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		caches = append(caches, c)
	}
	if p := os.Getenv("GOPATH"); p != "" {
		caches = append(caches, filepath.Join(strings.Split(p, string(os.PathListSeparator))[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		caches = append(caches, filepath.Join(home, "go", "pkg", "mod"))
	}
	// The user's own home, as /etc/passwd says, when $HOME points
	// elsewhere (a test's, a daemon's).
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		caches = append(caches, filepath.Join(u.HomeDir, "go", "pkg", "mod"))
	}
	// The user sudo ran for (the modules are theirs: `sudo make test`).
	if name := os.Getenv("SUDO_USER"); name != "" {
		if u, err := user.Lookup(name); err == nil && u.HomeDir != "" {
			caches = append(caches, filepath.Join(u.HomeDir, "go", "pkg", "mod"))
		}
	}
	for _, c := range caches {
		d := filepath.Join(c, "sigs.k8s.io", "gateway-api@"+version)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("gateway API CRDs: %s@%s is not in the module cache (looked in %v): run `go mod download %s`", Module, version, caches, Module)
}
