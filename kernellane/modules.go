package kernellane

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ModIndex is what depmod wrote about a kernel's modules: the loadable ones with
// their dependencies, and the names built into the kernel image.
type ModIndex struct {
	// Deps maps a module name to its file (relative to the modules directory) and
	// to the files it depends on, in modules.dep order: load them last to first.
	Deps    map[string][]string
	Builtin map[string]bool
}

// ModName normalises a module file or name: "kernel/fs/fuse/virtio-fs.ko.xz" and
// "virtio-fs" both give "virtio_fs" (modprobe treats - and _ alike).
func ModName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// ParseModIndex reads modules.dep and modules.builtin.
func ParseModIndex(dep, builtin io.Reader) (*ModIndex, error) {
	idx := &ModIndex{Deps: map[string][]string{}, Builtin: map[string]bool{}}
	sc := bufio.NewScanner(dep)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		file, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		idx.Deps[ModName(file)] = append([]string{file}, strings.Fields(deps)...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	sc = bufio.NewScanner(builtin)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			idx.Builtin[ModName(l)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	return idx, nil
}

// LoadModIndex reads the index of the modules directory dir.
func LoadModIndex(dir string) (*ModIndex, error) {
	dep, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module index (was depmod run?): %w", err)
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer builtin.Close()
	return ParseModIndex(dep, builtin)
}

// Has reports whether the kernel has the module, built in or loadable.
func (m *ModIndex) Has(name string) bool {
	name = ModName(name)
	_, ok := m.Deps[name]
	return ok || m.Builtin[name]
}

// LoadOrder returns the module files to insert, in order, so that every named
// module is available: dependencies first, built-ins skipped, no file twice.
// A name that is neither built in nor loadable is an error.
func (m *ModIndex) LoadOrder(names ...string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	for _, n := range names {
		n = ModName(n)
		if m.Builtin[n] {
			continue
		}
		files, ok := m.Deps[n]
		if !ok {
			return nil, fmt.Errorf("kernel has no module %s (neither built in nor in modules.dep)", n)
		}
		// modules.dep lists the module, then its dependencies so that loading them
		// from the last to the first works.
		for i := len(files) - 1; i >= 1; i-- {
			if !seen[files[i]] {
				seen[files[i]] = true
				order = append(order, files[i])
			}
		}
		if !seen[files[0]] {
			seen[files[0]] = true
			order = append(order, files[0])
		}
	}
	return order, nil
}

// SuiteModules are the modules the svcsim scenarios need: IPVS and its schedulers,
// conntrack/NAT, the iptables (legacy and nft-compat) matches and targets kube-proxy
// rules use, ipset, nf_tables expressions, and the link types of the topology.
// The guest loads those it finds and reports the rest; built-ins are fine.
var SuiteModules = []string{
	// IPVS
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "ip_vs_dh",
	"ip_vs_sed", "ip_vs_nq", "ip_vs_mh", "xt_ipvs",
	// conntrack and NAT
	"nf_conntrack", "nf_conntrack_netlink", "nf_nat", "nf_reject_ipv4",
	// iptables
	"x_tables", "ip_tables", "iptable_nat", "iptable_filter", "iptable_mangle", "iptable_raw",
	"ip6_tables", "ip6table_nat", "ip6table_filter", "ip6table_mangle",
	"xt_statistic", "xt_recent", "xt_comment", "xt_mark", "xt_addrtype", "xt_conntrack",
	"xt_MASQUERADE", "xt_nat", "xt_REDIRECT", "xt_set", "xt_tcpudp", "xt_multiport",
	"xt_physdev", "xt_CT", "ipt_REJECT", "ip6t_REJECT",
	// ipset
	"ip_set", "ip_set_hash_ip", "ip_set_hash_ipport", "ip_set_hash_ipportip",
	"ip_set_hash_ipportnet", "ip_set_hash_net", "ip_set_bitmap_port",
	// nf_tables
	"nf_tables", "nft_compat", "nft_numgen", "nft_ct", "nft_nat", "nft_masq", "nft_redir",
	"nft_chain_nat", "nft_reject_inet", "nft_fib_inet", "nft_limit", "nft_hash", "nft_quota",
	// links
	"veth", "bridge", "br_netfilter", "dummy",
}
