package userspace

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// The nat chains this mode owns (kube-proxy's userspace names). Portal chains
// catch ClusterIPs and external IPs; NodePort chains catch node ports on any
// local address and are jumped to after the portal chains, as in kube-proxy.
const (
	ChainPortalsContainer  = "KUBE-PORTALS-CONTAINER"
	ChainPortalsHost       = "KUBE-PORTALS-HOST"
	ChainNodePortContainer = "KUBE-NODEPORT-CONTAINER"
	ChainNodePortHost      = "KUBE-NODEPORT-HOST"
)

// ownedChains in the order they are declared.
var ownedChains = []string{ChainNodePortContainer, ChainNodePortHost, ChainPortalsContainer, ChainPortalsHost}

// jumpRule is one rule of a built-in chain that sends traffic to an owned
// chain. spec is the rule as iptables-save prints it, without "-A <chain>".
type jumpRule struct {
	chain  string
	first  bool // inserted at the top rather than appended
	spec   string
	target string
}

var jumpRules = []jumpRule{
	{"PREROUTING", true, `-m comment --comment "svcsim userspace: service portals" -j ` + ChainPortalsContainer, ChainPortalsContainer},
	{"OUTPUT", true, `-m comment --comment "svcsim userspace: service portals" -j ` + ChainPortalsHost, ChainPortalsHost},
	{"PREROUTING", false, `-m addrtype --dst-type LOCAL -m comment --comment "svcsim userspace: service nodeports" -j ` + ChainNodePortContainer, ChainNodePortContainer},
	{"OUTPUT", false, `-m addrtype --dst-type LOCAL -m comment --comment "svcsim userspace: service nodeports" -j ` + ChainNodePortHost, ChainNodePortHost},
}

// Runner runs the iptables tools in the calling thread's network namespace.
type Runner interface {
	// Restore feeds data to `iptables-restore -w --noflush`: chains declared
	// in data are created or flushed, nothing else is touched.
	Restore(ctx context.Context, data []byte) error
	// SaveNAT returns `iptables-save -t nat`.
	SaveNAT(ctx context.Context) ([]byte, error)
}

// ExecRunner execs the host's default iptables backend (iptables-restore and
// iptables-save from PATH, or the given binaries).
type ExecRunner struct {
	RestoreCmd, SaveCmd string
}

// Restore implements Runner.
func (r ExecRunner) Restore(ctx context.Context, data []byte) error {
	name := r.RestoreCmd
	if name == "" {
		name = "iptables-restore"
	}
	cmd := exec.CommandContext(ctx, name, "-w", "--noflush")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -w --noflush: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// SaveNAT implements Runner.
func (r ExecRunner) SaveNAT(ctx context.Context) ([]byte, error) {
	name := r.SaveCmd
	if name == "" {
		name = "iptables-save"
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, "-t", "nat")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t nat: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// natView is what this mode needs to know about the current nat table.
type natView struct {
	chains map[string]bool // owned chains that exist
	jumps  map[string]bool // jump rules (by "-A chain spec") that exist
	lines  []string        // every rule and chain line touching owned chains
}

func parseNAT(save []byte) natView {
	v := natView{chains: map[string]bool{}, jumps: map[string]bool{}}
	owned := map[string]bool{}
	for _, c := range ownedChains {
		owned[c] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if owned[name] {
				v.chains[name] = true
				v.lines = append(v.lines, line)
			}
		case strings.HasPrefix(line, "-A "):
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			target := ""
			if i := strings.LastIndex(line, " -j "); i >= 0 {
				target = strings.Fields(line[i+4:])[0]
			}
			if owned[fields[1]] || owned[target] {
				v.lines = append(v.lines, line)
			}
			if owned[target] && !owned[fields[1]] {
				v.jumps[line] = true
			}
		}
	}
	return v
}

// portalRule describes one Service port's proxy target.
type portalRule struct {
	comment   string // Service port ID
	proto     string // "tcp" or "udp"
	vips      []netip.Addr
	port      int32
	nodePort  int32
	proxyPort int
}

// buildRestore returns the iptables-restore input of one sync: owned chains
// are redeclared (which flushes them) and refilled, and missing jump rules are
// added. Traffic arriving from outside (pods, other hosts) is REDIRECTed to
// the proxy port, which rewrites the destination to the primary address of
// the interface it came in on, where the proxy listens (it listens on all
// addresses). Traffic from the node itself is DNATed to hostIP:proxyPort
// rather than REDIRECTed to 127.0.0.1, so that UDP replies, which the kernel
// sends from the node's address, match the connection's NAT (kube-proxy
// found the same). Without a host IP it falls back to REDIRECT.
func buildRestore(rules []portalRule, hostIP netip.Addr, have natView) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, c := range ownedChains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, j := range jumpRules {
		if have.jumps["-A "+j.chain+" "+j.spec] {
			continue
		}
		if j.first {
			fmt.Fprintf(&b, "-I %s 1 %s\n", j.chain, j.spec)
		} else {
			fmt.Fprintf(&b, "-A %s %s\n", j.chain, j.spec)
		}
	}
	hostTarget := func(proxyPort int) string {
		if !hostIP.IsValid() {
			return "-j REDIRECT --to-ports " + strconv.Itoa(proxyPort)
		}
		return "-j DNAT --to-destination " + netip.AddrPortFrom(hostIP, uint16(proxyPort)).String()
	}
	for _, r := range rules {
		redirect := "-j REDIRECT --to-ports " + strconv.Itoa(r.proxyPort)
		for _, vip := range r.vips {
			match := fmt.Sprintf("-d %s/32 -p %s -m comment --comment %q -m %s --dport %d", vip, r.proto, r.comment, r.proto, r.port)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsContainer, match, redirect)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsHost, match, hostTarget(r.proxyPort))
		}
		if r.nodePort != 0 {
			match := fmt.Sprintf("-p %s -m comment --comment %q -m %s --dport %d", r.proto, r.comment, r.proto, r.nodePort)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainNodePortContainer, match, redirect)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainNodePortHost, match, hostTarget(r.proxyPort))
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// buildCleanup returns the iptables-restore input that removes the jump rules
// and owned chains present in have, or nil when there is nothing to remove.
func buildCleanup(have natView) []byte {
	if len(have.chains) == 0 && len(have.jumps) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, j := range jumpRules {
		if have.jumps["-A "+j.chain+" "+j.spec] {
			fmt.Fprintf(&b, "-D %s %s\n", j.chain, j.spec)
		}
	}
	// A jump to an owned chain that is not ours (changed by hand) would make
	// -X fail; report it through the restore error rather than guess.
	for _, c := range ownedChains {
		if have.chains[c] {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
	}
	for _, c := range ownedChains {
		if have.chains[c] {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}
