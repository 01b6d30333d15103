package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestHelpDocumentsExitStatus: svcsim --help lists every exit status main
// can return, and a bad flag is a usage error (status 2).
func TestHelpDocumentsExitStatus(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Exit status:", "  0    success", "  1    an error", "  2    an unknown flag", "126", "127"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
	root = newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"get", "--no-such-flag"})
	var ue *usageError
	if err := root.Execute(); !errors.As(err, &ue) {
		t.Fatalf("bad flag gave %v, want a usage error (exit 2)", err)
	}
}

// TestNeedRootNamesTheRemedy: without root the message says what is
// missing and what to do.
func TestNeedRootNamesTheRemedy(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a normal user only (make unit-unprivileged runs it as nobody)")
	}
	err := needRoot("up")
	if err == nil || err.Error() != "svcsim up needs root (it manages network namespaces): run it with sudo" {
		t.Fatalf("needRoot: %v", err)
	}
}
