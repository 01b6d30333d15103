package kernellane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// initBinary resolves the init binary ("" is this executable) and what it
// needs in the initramfs.
func initBinary(initBin string) (string, initDeps, error) {
	if initBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", initDeps{}, fmt.Errorf("find own executable: %w", err)
		}
		initBin = exe
	}
	dirs, err := hostLibDirs()
	if err != nil {
		return "", initDeps{}, err
	}
	deps, err := findInitDeps(initBin, dirs)
	if err != nil {
		return "", initDeps{}, err
	}
	return initBin, deps, nil
}

// writeInitramfs writes the guest's initramfs: the init binary (and, when it
// is dynamically linked, its loader and libraries, see initDeps), the spec,
// and the modules needed to mount the root (in load order).
func writeInitramfs(path, initBin string, deps initDeps, idx *ModIndex, modDir string, mods []string, spec GuestSpec) error {
	bin, err := os.ReadFile(initBin)
	if err != nil {
		return fmt.Errorf("read init binary: %w", err)
	}
	files, err := idx.LoadOrder(mods...)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	cw := &cpioWriter{w: f}
	for _, d := range []string{"dev", "proc", "sys", "mnt", "modules"} {
		cw.Dir(d, 0o755)
	}
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.File("init", 0o755, bin)
	if err := addInitDeps(cw, deps); err != nil {
		f.Close()
		return err
	}
	for i, file := range files {
		data, err := readModule(filepath.Join(modDir, file))
		if err != nil {
			f.Close()
			return err
		}
		name := fmt.Sprintf("/modules/%02d-%s.ko", i, ModName(file))
		cw.File(name, 0o644, data)
		spec.InitModules = append(spec.InitModules, name)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		f.Close()
		return fmt.Errorf("encode guest spec: %w", err)
	}
	cw.File(specPath, 0o644, js)
	if err := cw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// addInitDeps adds a dynamic init binary's loader at its own path and its
// libraries in initLibDir (their host files' contents, symlinks followed).
func addInitDeps(cw *cpioWriter, deps initDeps) error {
	if deps.static() {
		return nil
	}
	made := map[string]bool{"dev": true, "proc": true, "sys": true, "mnt": true, "modules": true}
	mkdirs := func(dir string) {
		var parts []string
		for d := strings.Trim(dir, "/"); d != "." && d != ""; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if !made[d] {
				made[d] = true
				cw.Dir(d, 0o755)
			}
		}
	}
	put := func(dst, src string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("init binary's %s: %w", filepath.Base(dst), err)
		}
		mkdirs(filepath.Dir(dst))
		cw.File(dst, 0o755, data)
		return nil
	}
	if err := put(deps.Interp, deps.Interp); err != nil {
		return err
	}
	for _, name := range sortedLibs(deps.Libs) {
		if err := put(filepath.Join(initLibDir, name), deps.Libs[name]); err != nil {
			return err
		}
	}
	return nil
}

func sortedLibs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readModule returns a module file's content, decompressed.
func readModule(path string) ([]byte, error) {
	var tool string
	switch filepath.Ext(path) {
	case ".ko":
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return data, nil
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		tool = "gzip"
	default:
		return nil, fmt.Errorf("module %s: unknown compression", path)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", path)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return data, nil
}
