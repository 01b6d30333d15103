package kernellane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testdata/apt-cache-search.txt is `apt-cache search --names-only '^linux-image-[0-9]'`
// on a Debian 12 machine with bookworm-security: signed, -unsigned and -dbg images
// of 6.1.0-47..56 (cloud, generic, rt) and 6.12.100..117+deb12.
func aptSearchOutput(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/apt-cache-search.txt")
	require.NoError(t, err)
	return data
}

func TestChooseFromAptCache(t *testing.T) {
	names := parseAptSearch(aptSearchOutput(t))
	require.Contains(t, names, "linux-image-6.1.0-56-cloud-amd64")
	for _, tc := range []struct {
		sel, want string
	}{
		{"6.1", "linux-image-6.1.0-56-cloud-amd64"},
		{"6.1-cloud", "linux-image-6.1.0-56-cloud-amd64"},
		{"6.1-generic", "linux-image-6.1.0-56-amd64"},
		{"6.1-rt", "linux-image-6.1.0-56-rt-amd64"},
		{"6.12", "linux-image-6.12.117+deb12-amd64"},
		{"6.12-cloud", "linux-image-6.12.117+deb12-cloud-amd64"},
		{"linux-image-6.1.0-50-cloud-amd64", "linux-image-6.1.0-50-cloud-amd64"},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			sel, err := ParseSelector(tc.sel)
			require.NoError(t, err)
			got, ok := sel.Choose(names)
			require.True(t, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestChooseNumericOrderAndMisses(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-9-cloud-amd64",
		"linux-image-6.1.0-10-cloud-amd64",
		"linux-image-6.1.0-11-cloud-amd64-unsigned",
		"linux-image-6.1.0-12-cloud-amd64-dbg",
		"linux-image-6.12.9+deb12-amd64",
		"linux-image-6.12.10+deb12-amd64",
		"linux-image-6.12-amd64", // meta package
	}
	sel, _ := ParseSelector("6.1")
	got, ok := sel.Choose(names)
	require.True(t, ok)
	require.Equal(t, "linux-image-6.1.0-10-cloud-amd64", got, "ABI 10 is newer than 9; unsigned and dbg are not images")
	sel, _ = ParseSelector("6.12")
	got, _ = sel.Choose(names)
	require.Equal(t, "linux-image-6.12.10+deb12-amd64", got)

	sel, _ = ParseSelector("5.10")
	_, ok = sel.Choose(names)
	require.False(t, ok)
	sel, _ = ParseSelector("linux-image-6.1.0-99-cloud-amd64")
	_, ok = sel.Choose(names)
	require.False(t, ok)
}

func TestParseSelectorErrors(t *testing.T) {
	for _, s := range []string{"", "6", "latest", "6.1-foo", "6.1.0"} {
		_, err := ParseSelector(s)
		require.Error(t, err, s)
	}
}

// fakeApt plays apt-cache, apt-get, dpkg-deb and depmod over a fake package set,
// and records the commands.
type fakeApt struct {
	available string // apt-cache search output
	calls     []string
	offline   bool
}

func (f *fakeApt) run(_ context.Context, dir, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	switch name {
	case "apt-cache":
		if f.offline {
			return nil, errors.New("apt-cache: offline")
		}
		return []byte(f.available), nil
	case "apt-get":
		if args[0] == "update" {
			f.available += "linux-image-6.12.200+deb12-amd64 - Linux 6.12\n"
			return nil, nil
		}
		pkg := args[len(args)-1]
		return nil, os.WriteFile(filepath.Join(dir, pkg+"_1_amd64.deb"), []byte(pkg), 0o644)
	case "dpkg-deb":
		deb, root := args[1], args[2]
		data, err := os.ReadFile(deb)
		if err != nil {
			return nil, err
		}
		release := strings.TrimPrefix(string(data), "linux-image-")
		for _, d := range []string{"boot", "lib/modules/" + release} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return nil, err
			}
		}
		return nil, os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+release), []byte("kernel"), 0o644)
	case "depmod":
		return nil, os.WriteFile(filepath.Join(args[1], "lib/modules", args[2], "modules.dep"), nil, 0o644)
	}
	return nil, errors.New("unexpected command " + name)
}

func (f *fakeApt) count(prefix string) int {
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func TestCacheFetchesOnceThenServesFromCache(t *testing.T) {
	apt := &fakeApt{available: "linux-image-6.1.0-55-cloud-amd64 - x\nlinux-image-6.1.0-56-cloud-amd64 - x\n"}
	c := &Cache{Dir: t.TempDir(), Run: apt.run}
	sel, _ := ParseSelector("6.1")

	k, err := c.Get(context.Background(), sel)
	require.NoError(t, err)
	require.Equal(t, "linux-image-6.1.0-56-cloud-amd64", k.Package)
	require.Equal(t, "6.1.0-56-cloud-amd64", k.Release)
	require.FileExists(t, k.Vmlinuz())
	require.FileExists(t, filepath.Join(k.ModulesDir(), "modules.dep"), "depmod ran")
	require.Equal(t, 1, apt.count("apt-get download"))
	debs, _ := filepath.Glob(filepath.Join(c.Dir, "*", "*.deb"))
	require.Empty(t, debs, "the .deb is not kept")

	k2, err := c.Get(context.Background(), sel)
	require.NoError(t, err)
	require.Equal(t, k, k2)
	require.Equal(t, 1, apt.count("apt-get download"), "second run downloads nothing")
	require.Equal(t, []string{"linux-image-6.1.0-56-cloud-amd64"}, c.Cached())

	// Offline, the cached kernel still serves.
	apt.offline = true
	k3, err := c.Get(context.Background(), sel)
	require.NoError(t, err)
	require.Equal(t, k, k3)
	ents, _ := os.ReadDir(c.Dir)
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), ".fetch-"), "scratch dir left: %s", e.Name())
	}
}

func TestCacheUpdatesAptWhenNothingMatches(t *testing.T) {
	apt := &fakeApt{available: "linux-image-6.1.0-56-cloud-amd64 - x\n"}
	c := &Cache{Dir: t.TempDir(), Run: apt.run}
	sel, _ := ParseSelector("6.12")
	k, err := c.Get(context.Background(), sel)
	require.NoError(t, err)
	require.Equal(t, "linux-image-6.12.200+deb12-amd64", k.Package)
	require.Equal(t, 1, apt.count("apt-get update"))

	sel, _ = ParseSelector("5.10")
	_, err = c.Get(context.Background(), sel)
	require.ErrorContains(t, err, "no kernel package matches 5.10")
}

func TestCacheOfflineWithoutCachedKernel(t *testing.T) {
	apt := &fakeApt{offline: true}
	c := &Cache{Dir: t.TempDir(), Run: apt.run}
	sel, _ := ParseSelector("6.1")
	_, err := c.Get(context.Background(), sel)
	require.ErrorContains(t, err, "apt failed")
}

func TestCacheIgnoresIncompleteEntries(t *testing.T) {
	dir := t.TempDir()
	// An unpack interrupted before kernel.json was written.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "linux-image-6.1.0-56-cloud-amd64", "boot"), 0o755))
	apt := &fakeApt{available: "linux-image-6.1.0-56-cloud-amd64 - x\n"}
	c := &Cache{Dir: dir, Run: apt.run}
	require.Empty(t, c.Cached())
	sel, _ := ParseSelector("6.1")
	k, err := c.Get(context.Background(), sel)
	require.NoError(t, err)
	require.FileExists(t, k.Vmlinuz())
	require.Equal(t, 1, apt.count("apt-get download"))
}
