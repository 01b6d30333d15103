// Package iptrestore is the one way svcsim's datapaths reach iptables: the
// whole desired ruleset of a sync goes to the kernel with one
// iptables-restore run, on the node's configured backend (legacy or nft),
// and what is there is read with iptables-save. The iptables, IPVS and
// userspace modes share it the way kube-proxy's proxiers share
// pkg/util/iptables. Package ruleset models the tables in memory,
// iptrestoretest.Fake is an Interface on that model, and Jump and
// CleanupInput are the rule shapes every mode writes.
//
// Commands run in the network namespace of the calling thread: call them
// from the node's proxy process or inside netns.NS.Do.
package iptrestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Interface is a datapath's only way to iptables. Exec runs the real tools
// in the network namespace of the calling thread; iptrestoretest.Fake is an
// in-memory one.
type Interface interface {
	// Restore feeds data to iptables-restore (one transaction per table);
	// noFlush keeps what the input does not mention (--noflush), counters
	// passes --counters.
	Restore(ctx context.Context, data []byte, noFlush, counters bool) error
	// Save returns `iptables-save -t table`.
	Save(ctx context.Context, table string) ([]byte, error)
	// Version returns the first line of `iptables --version`, e.g.
	// "iptables v1.8.9 (nf_tables)".
	Version(ctx context.Context) (string, error)
}

// Backend is one of the two iptables implementations Debian ships.
type Backend string

// The backends.
const (
	// Legacy is the x_tables kernel API (iptables-legacy).
	Legacy Backend = "legacy"
	// NFT is iptables over nf_tables (iptables-nft).
	NFT Backend = "nft"
)

func (b Backend) valid() bool { return b == Legacy || b == NFT }

// Binaries returns the iptables, iptables-restore and iptables-save
// commands of the backend.
func (b Backend) Binaries() (iptables, restore, save string) {
	p := "iptables-" + string(b)
	return p, p + "-restore", p + "-save"
}

// BackendOf parses the output of `iptables --version`: "(nf_tables)" is NFT,
// "(legacy)" is Legacy; iptables before 1.8 prints neither and is legacy.
func BackendOf(version string) (Backend, error) {
	switch {
	case strings.Contains(version, "(nf_tables)"):
		return NFT, nil
	case strings.Contains(version, "(legacy)"):
		return Legacy, nil
	case strings.HasPrefix(strings.TrimSpace(version), "iptables v1."):
		return Legacy, nil
	}
	return "", fmt.Errorf("cannot tell the iptables backend from %q", version)
}

// DetectBackend runs `iptables --version` (the host's default iptables) and
// returns its backend.
func DetectBackend(ctx context.Context) (Backend, error) {
	out, err := exec.CommandContext(ctx, "iptables", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("run iptables --version: %w", err)
	}
	return BackendOf(string(out))
}

// NodeBackend returns the backend a node is configured with: configured when
// set ("legacy" or "nft", modes.Options.IPTablesBackend), else the one the
// host's `iptables` command uses.
func NodeBackend(ctx context.Context, configured string) (Backend, error) {
	if configured != "" {
		b := Backend(configured)
		if !b.valid() {
			return "", fmt.Errorf("unknown iptables backend %q (want %q or %q)", configured, Legacy, NFT)
		}
		return b, nil
	}
	return DetectBackend(ctx)
}

// NewNode returns an Exec for the node's configured backend (NodeBackend).
func NewNode(configured string) (*Exec, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := NodeBackend(ctx, configured)
	if err != nil {
		return nil, err
	}
	return NewExec(b)
}

// Exec runs a backend's iptables-restore/-save binaries. The commands
// inherit the network namespace of the calling thread: call it from the node's
// process or inside netns.NS.Do.
type Exec struct {
	Backend Backend
}

var _ Interface = (*Exec)(nil)

// NewExec checks that the backend's binaries are installed.
func NewExec(b Backend) (*Exec, error) {
	if !b.valid() {
		return nil, fmt.Errorf("unknown iptables backend %q (want %q or %q)", b, Legacy, NFT)
	}
	ipt, restore, save := b.Binaries()
	for _, bin := range []string{ipt, restore, save} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("iptables backend %s: %w", b, err)
		}
	}
	return &Exec{Backend: b}, nil
}

// Restore runs `iptables-<backend>-restore -w [--noflush] [--counters]`.
func (r *Exec) Restore(ctx context.Context, data []byte, noFlush, counters bool) error {
	_, bin, _ := r.Backend.Binaries()
	args := []string{"-w"}
	if noFlush {
		args = append(args, "--noflush")
	}
	if counters {
		args = append(args, "--counters")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &RestoreError{Cmd: bin + " " + strings.Join(args, " "), Err: err, Stderr: strings.TrimSpace(stderr.String()), Input: data}
	}
	return nil
}

// Save runs `iptables-<backend>-save -t table`.
func (r *Exec) Save(ctx context.Context, table string) ([]byte, error) {
	_, _, bin := r.Backend.Binaries()
	cmd := exec.CommandContext(ctx, bin, "-t", table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s: %w: %s", bin, table, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Version runs `iptables-<backend> --version`.
func (r *Exec) Version(ctx context.Context) (string, error) {
	bin, _, _ := r.Backend.Binaries()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// RestoreError is a failed iptables-restore run. Its message quotes the input
// lines around the one iptables-restore reported ("line N failed").
type RestoreError struct {
	Cmd    string
	Err    error
	Stderr string
	Input  []byte
}

var failedLine = regexp.MustCompile(`line (\d+) failed`)

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Stderr)
	if m := failedLine.FindStringSubmatch(e.Stderr); m != nil {
		n, _ := strconv.Atoi(m[1])
		msg += "\n" + ExtractLines(e.Input, n, 2)
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }

// ExtractLines returns the lines of data around line n (1-based), numbered,
// the failing one marked with "=>".
func ExtractLines(data []byte, n, around int) string {
	lines := strings.Split(string(data), "\n")
	var b strings.Builder
	for i := max(1, n-around); i <= min(len(lines), n+around); i++ {
		mark := "  "
		if i == n {
			mark = "=>"
		}
		fmt.Fprintf(&b, "%s %5d: %s\n", mark, i, lines[i-1])
	}
	return b.String()
}

// IsRestoreError reports whether err came from a failed iptables-restore.
func IsRestoreError(err error) bool {
	var re *RestoreError
	return errors.As(err, &re)
}
