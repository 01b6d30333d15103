package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BinaryEnv names the multi-call binary of upstream components (built by
// `make kube` from the upstream/ module into bin/k8s). When set, it is the
// only place looked at, and a missing file is an error rather than a skip.
const BinaryEnv = "SVCSIM_K8S_BIN"

// binaryName is the file name `make kube` writes into bin/.
const binaryName = "k8s"

// FindBinary locates the multi-call binary: $SVCSIM_K8S_BIN, else k8s next
// to the running executable (bin/svcsim beside bin/k8s), else bin/k8s in the
// nearest directory above the working directory that has one (go test runs
// in a package directory of the repository). explicit reports whether
// $SVCSIM_K8S_BIN named it.
func FindBinary() (path string, explicit bool, err error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if err := executable(p); err != nil {
			return "", true, fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, true, nil
	}
	var tried []string
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), binaryName)
		if executable(p) == nil {
			return p, false, nil
		}
		tried = append(tried, p)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, "bin", binaryName)
			if executable(p) == nil {
				return p, false, nil
			}
			tried = append(tried, p)
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "", false, fmt.Errorf("upstream binary not found (build it with `make kube`, or set %s); tried %s",
		BinaryEnv, strings.Join(tried, ", "))
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// Versions asks the binary for every component's version (`k8s versions`):
// "kubernetes", "etcd", "coredns".
func Versions(ctx context.Context, binary string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, binary, "versions").Output()
	if err != nil {
		return nil, fmt.Errorf("%s versions: %w", binary, err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("%s versions: %w", binary, err)
	}
	return v, nil
}

// FindCompanion locates the executable name ("kube-proxy-1.25") in the
// directory of the multi-call binary (FindBinary): `make` builds both into
// bin/.
func FindCompanion(name string) (string, error) {
	bin, _, err := FindBinary()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(bin), name)
	if err := executable(p); err != nil {
		return "", fmt.Errorf("%s beside %s: %w", name, bin, err)
	}
	return p, nil
}
