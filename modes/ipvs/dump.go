package ipvs

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
)

// Dump implements modes.Dumper: `ipvsadm -Ln` run in the calling thread's
// namespace (or, without ipvsadm, the same table rendered from IPVS), then
// the names of the ipsets (`ipset list -n`).
func (p *Proxier) Dump(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.cfg.IPVSAdm != "" {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, p.cfg.IPVSAdm, "-Ln")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s -Ln: %w: %s", p.cfg.IPVSAdm, err, strings.TrimSpace(stderr.String()))
		}
		b.Write(out)
	} else {
		out, err := renderIPVS(p.cfg.IPVS)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	names, err := p.cfg.IPSet.ListSets(ctx)
	if err != nil {
		return "", err
	}
	b.WriteString("# ipset list -n\n")
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	return b.String(), nil
}

// renderIPVS prints the IPVS table in the layout of `ipvsadm -Ln`.
func renderIPVS(iv ipvsutil.Interface) (string, error) {
	svcs, err := iv.Services()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("IP Virtual Server (rendered by svcsim from netlink)\n")
	b.WriteString("Prot LocalAddress:Port Scheduler Flags\n")
	b.WriteString("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	sortVS(svcs)
	for _, vs := range svcs {
		fmt.Fprintf(&b, "%s  %s:%d %s", vs.Protocol, vs.Address, vs.Port, vs.Scheduler)
		if vs.Flags&ipvsutil.FlagPersistent != 0 {
			fmt.Fprintf(&b, " persistent %d", vs.Timeout)
		}
		b.WriteByte('\n')
		dsts, err := iv.Destinations(vs)
		if err != nil {
			return "", err
		}
		for _, d := range dsts {
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %-10d\n", d.Key().String(), "Masq", d.Weight, d.ActiveConn, d.InactiveConn)
		}
	}
	return b.String(), nil
}

func sortVS(v []*ipvsutil.VirtualServer) {
	sort.Slice(v, func(i, j int) bool { return keyLess(v[i].Key(), v[j].Key()) })
}
