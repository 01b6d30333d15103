// Package reexec lets a binary start copies of itself that run a registered
// entry point instead of main (the way node proxies are started inside their
// node's namespace). Both the svcsim binary and test binaries call Init first
// thing, so scenarios work the same under `go test` and from the CLI.
package reexec

import (
	"fmt"
	"os"
	"os/exec"
)

// EnvVar selects the entry point in a re-executed child.
const EnvVar = "SVCSIM_REEXEC"

var entries = map[string]func(){}

// Register adds an entry point. Call it from init; names must be unique.
func Register(name string, f func()) {
	if _, dup := entries[name]; dup {
		panic("reexec: duplicate entry " + name)
	}
	entries[name] = f
}

// Init runs the requested entry point and exits if this process is a
// re-executed child; otherwise it returns false and the caller carries on.
func Init() bool {
	name := os.Getenv(EnvVar)
	if name == "" {
		return false
	}
	f, ok := entries[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "reexec: unknown entry point %q\n", name)
		os.Exit(2)
	}
	os.Unsetenv(EnvVar)
	f()
	os.Exit(0)
	return true
}

// Command returns a command that re-executes this binary into entry point
// name with args. The child inherits the network namespace of the thread that
// starts it: start it inside netns.NS.Do to place it in a namespace.
func Command(name string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), EnvVar+"="+name)
	return cmd, nil
}
