// Package podexec runs a command as a pod's container would see its files:
// in the pod's network namespace (start the command inside netns.NS.Do),
// in a private mount namespace where the kubelet's files are bound over
// their container paths (/etc/resolv.conf, /etc/hosts, ConfigMap, Secret
// and service-account volumes), with the container's environment.
//
// A container path that does not exist on the host
// (/var/run/secrets/kubernetes.io/serviceaccount, say) is made inside an
// overlay of its deepest existing ancestor, whose upper layer is a tmpfs in
// the private mount namespace: nothing is ever created in the host's own
// file system, and every mount vanishes with the command.
package podexec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/internal/reexec"
)

// Mount shows Source (a host file or directory) at Path.
type Mount struct {
	Path     string `json:"path"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Spec is what the command gets.
type Spec struct {
	Mounts []Mount `json:"mounts,omitempty"`
	// Scratch is an existing, empty directory the private namespace mounts
	// a tmpfs on for overlays' upper layers (the host sees none of it).
	Scratch string `json:"scratch,omitempty"`
}

const entry = "svcsim-podexec"

func init() { reexec.Register(entry, main) }

// Command returns a command running argv with spec's mounts. env is added
// to this process's environment. Start it on a thread in the pod's network
// namespace (netns.NS.Do(cmd.Run)).
func Command(spec Spec, env, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("podexec: no command")
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	c, err := reexec.Command(entry, append([]string{string(b)}, argv...)...)
	if err != nil {
		return nil, err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	c.Env = append(c.Env, env...)
	return c, nil
}

func main() {
	if len(os.Args) < 3 {
		fail(fmt.Errorf("want SPEC COMMAND [ARGS...]"))
	}
	var spec Spec
	if err := json.Unmarshal([]byte(os.Args[1]), &spec); err != nil {
		fail(fmt.Errorf("spec: %w", err))
	}
	if err := setup(spec); err != nil {
		fail(err)
	}
	path, err := exec.LookPath(os.Args[2])
	if err != nil {
		fail(err)
	}
	fail(syscall.Exec(path, os.Args[2:], os.Environ()))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, entry+":", err)
	os.Exit(127)
}

// setup runs in the fresh mount namespace.
func setup(spec Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// Hold every source open first: an overlay made later may hide the
	// path it was reached by.
	fds := make([]int, len(spec.Mounts))
	for i, m := range spec.Mounts {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", m.Source, err)
		}
		fds[i] = fd
	}
	scratchUp := false
	layers := 0
	for i, m := range spec.Mounts {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			return fmt.Errorf("stat %s: %w", m.Source, err)
		}
		dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if _, err := os.Lstat(m.Path); err != nil {
			if spec.Scratch == "" {
				return fmt.Errorf("%s does not exist and no scratch directory was given", m.Path)
			}
			if !scratchUp {
				if err := unix.Mount("tmpfs", spec.Scratch, "tmpfs", 0, "mode=0700"); err != nil {
					return fmt.Errorf("mount scratch tmpfs: %w", err)
				}
				scratchUp = true
			}
			layers++
			if err := overlayAncestor(m.Path, filepath.Join(spec.Scratch, strconv.Itoa(layers))); err != nil {
				return err
			}
			if dir {
				err = os.MkdirAll(m.Path, 0o755)
			} else if err = os.MkdirAll(filepath.Dir(m.Path), 0o755); err == nil {
				err = os.WriteFile(m.Path, nil, 0o644)
			}
			if err != nil {
				return fmt.Errorf("make mount point %s: %w", m.Path, err)
			}
		}
		src := fmt.Sprintf("/proc/self/fd/%d", fds[i])
		if err := unix.Mount(src, m.Path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Path, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("make %s read-only: %w", m.Path, err)
			}
		}
	}
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
	return nil
}

// overlayAncestor mounts an overlay on the deepest existing ancestor of
// path (symlinks resolved), its upper layer under layer, so path can be
// created without touching the host's file system.
func overlayAncestor(path, layer string) error {
	anc := filepath.Dir(filepath.Clean(path))
	for {
		if _, err := os.Stat(anc); err == nil {
			break
		}
		anc = filepath.Dir(anc)
	}
	real, err := filepath.EvalSymlinks(anc)
	if err != nil {
		return err
	}
	upper, work := filepath.Join(layer, "upper"), filepath.Join(layer, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", real, upper, work)
	if err := unix.Mount("overlay", real, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay %s (to make %s): %w", real, path, err)
	}
	return nil
}
