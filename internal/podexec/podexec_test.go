package podexec

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/internal/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func TestMountsAndEnv(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces): run with sudo go test ...")
	}
	dir := t.TempDir()
	sa := filepath.Join(dir, "sa")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sa, "token"), []byte("tok"), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("10.244.1.2\tweb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	const saPath = "/var/run/secrets/svcsim-podexec-test/serviceaccount"
	if _, err := os.Stat(filepath.Dir(saPath)); err == nil {
		t.Fatalf("%s exists on the host before the test", filepath.Dir(saPath))
	}
	spec := Spec{Scratch: scratch, Mounts: []Mount{
		{Path: "/etc/hosts", Source: hosts},
		{Path: saPath, Source: sa, ReadOnly: true},
	}}
	c, err := Command(spec, []string{"POD_NAME=web"}, []string{"sh", "-c",
		`cat /etc/hosts; cat ` + saPath + `/token; echo; echo $POD_NAME; touch ` + saPath + `/x 2>/dev/null && echo writable || echo read-only`})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if want := "10.244.1.2\tweb\ntok\nweb\nread-only\n"; out.String() != want {
		t.Fatalf("output %q, want %q (stderr %q)", out.String(), want, errb.String())
	}
	if _, err := os.Stat(filepath.Dir(saPath)); err == nil {
		t.Errorf("%s was created on the host", filepath.Dir(saPath))
	}
	if b, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(b), "10.244.1.2\tweb") {
		t.Error("the host's /etc/hosts changed")
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Errorf("scratch directory not empty on the host: %v", entries)
	}
}
