package kernellane

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeELF writes a minimal ELF header of the given class (no program
// headers, so no PT_INTERP: what a static binary looks like to the loader
// checks) for the host's machine.
func writeELF(t *testing.T, path string, class elf.Class) {
	t.Helper()
	var buf bytes.Buffer
	ident := [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(class), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	switch class {
	case elf.ELFCLASS64:
		require.NoError(t, binary.Write(&buf, binary.LittleEndian, elf.Header64{Ident: ident,
			Type: uint16(elf.ET_EXEC), Machine: uint16(hostMachine(t)), Version: uint32(elf.EV_CURRENT),
			Ehsize: 64, Phentsize: 56, Shentsize: 64}))
	case elf.ELFCLASS32:
		require.NoError(t, binary.Write(&buf, binary.LittleEndian, elf.Header32{Ident: ident,
			Type: uint16(elf.ET_EXEC), Machine: uint16(hostMachine(t)), Version: uint32(elf.EV_CURRENT),
			Ehsize: 52, Phentsize: 32, Shentsize: 40}))
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o755))
}

func hostMachine(t *testing.T) elf.Machine {
	t.Helper()
	f, err := elf.Open(dynamicBinary(t))
	require.NoError(t, err)
	defer f.Close()
	return f.Machine
}

// dynamicBinary is a dynamically linked program of this host (ls, sh).
func dynamicBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"ls", "sh", "cat"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if f, err := elf.Open(p); err == nil {
			dyn := false
			for _, ph := range f.Progs {
				dyn = dyn || ph.Type == elf.PT_INTERP
			}
			f.Close()
			if dyn {
				return p
			}
		}
	}
	t.Skip("no dynamically linked ls, sh or cat on this host")
	return ""
}

func TestInitDepsStatic(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "init")
	writeELF(t, bin, elf.ELFCLASS64)
	d, err := findInitDeps(bin, nil)
	require.NoError(t, err)
	require.True(t, d.static())
	require.Empty(t, d.Libs)
	require.Nil(t, d.env(), "a static init needs no environment")
}

// TestInitDepsDynamic: a dynamically linked binary (what a plain `go build`
// of svcsim is) brings its loader and its libraries' closure, found in the
// host's loader directories; the loader is not copied twice.
func TestInitDepsDynamic(t *testing.T) {
	bin := dynamicBinary(t)
	dirs, err := hostLibDirs()
	require.NoError(t, err)
	d, err := findInitDeps(bin, dirs)
	require.NoError(t, err)
	require.False(t, d.static())
	require.FileExists(t, d.Interp)
	require.Contains(t, d.Libs, "libc.so.6")
	require.NotContains(t, d.Libs, filepath.Base(d.Interp))
	for name, path := range d.Libs {
		require.Equal(t, name, filepath.Base(path))
		require.FileExists(t, path)
	}
	require.Equal(t, []string{"LD_LIBRARY_PATH=" + initLibDir}, d.env())
	require.True(t, strings.HasSuffix(kernelCmdline(false, d.env()...), " LD_LIBRARY_PATH="+initLibDir))
}

// TestInitDepsMachine: a library of another class (a 32-bit copy in a
// multilib directory) is passed over; one that is nowhere fails with what to
// do.
func TestInitDepsMachine(t *testing.T) {
	bin := dynamicBinary(t)
	dirs, err := hostLibDirs()
	require.NoError(t, err)
	other := t.TempDir()
	writeELF(t, filepath.Join(other, "libc.so.6"), elf.ELFCLASS32)
	d, err := findInitDeps(bin, append([]string{other}, dirs...))
	require.NoError(t, err)
	require.NotEqual(t, other, filepath.Dir(d.Libs["libc.so.6"]))

	_, err = findInitDeps(bin, []string{other})
	require.ErrorContains(t, err, "(needed by "+bin+"): not found")
	require.ErrorContains(t, err, "CGO_ENABLED=0")
}

func TestLdSoConfDirs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("ld.so.conf", "# comment\n/first\ninclude d/*.conf\n/last # trailing comment\n")
	write("d/b.conf", "/b1\n\n/b2\n")
	write("d/a.conf", "/a\ninclude ../ld.so.conf\n") // a loop is read once
	got, err := ldSoConfDirs(filepath.Join(dir, "ld.so.conf"))
	require.NoError(t, err)
	require.Equal(t, []string{"/first", "/a", "/b1", "/b2", "/last"}, got)

	got, err = ldSoConfDirs(filepath.Join(dir, "missing.conf"))
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestInitramfsInit: the initramfs holds the init binary, and for a dynamic
// one its loader at its own path and its libraries in initLibDir; for a
// static one nothing more.
func TestInitramfsInit(t *testing.T) {
	tmp := t.TempDir()
	idx := &ModIndex{}
	names := func(path string) map[string]cpioEntry {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		out := map[string]cpioEntry{}
		for _, e := range readCpio(t, data) {
			out[e.name] = e
		}
		return out
	}

	static := filepath.Join(tmp, "static")
	writeELF(t, static, elf.ELFCLASS64)
	bin, deps, err := initBinary(static)
	require.NoError(t, err)
	require.Equal(t, static, bin)
	out := filepath.Join(tmp, "static.cpio")
	require.NoError(t, writeInitramfs(out, bin, deps, idx, tmp, nil, GuestSpec{}))
	got := names(out)
	require.Contains(t, got, "init")
	for name := range got {
		require.False(t, strings.HasPrefix(name, strings.TrimPrefix(initLibDir, "/")), "static init got %s", name)
	}

	dyn := dynamicBinary(t)
	bin, deps, err = initBinary(dyn)
	require.NoError(t, err)
	out = filepath.Join(tmp, "dynamic.cpio")
	require.NoError(t, writeInitramfs(out, bin, deps, idx, tmp, nil, GuestSpec{}))
	got = names(out)
	interp := strings.TrimPrefix(deps.Interp, "/")
	require.Contains(t, got, interp)
	require.Contains(t, got, strings.TrimPrefix(initLibDir, "/")+"/libc.so.6")
	for d := filepath.Dir(interp); d != "."; d = filepath.Dir(d) {
		require.Equal(t, uint64(cpioDir|0o755), got[d].mode, "directory %s of the loader", d)
	}
	want, err := os.ReadFile(deps.Interp)
	require.NoError(t, err)
	require.Equal(t, string(want), got[interp].data, "the loader's content, symlinks followed")
}
