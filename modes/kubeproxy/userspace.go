package kubeproxy

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane/kube"
)

// Userspace is the genuine userspace proxier: kube-proxy of Kubernetes
// v1.25 (pkg/proxy/userspace, removed in v1.26), built from its own module
// (upstream/kubeproxy125) into bin/kube-proxy-1.25 by `make kube-userspace`.
// It runs against the plane's v1.37 control plane, far outside the
// supported version skew (kube-proxy may be at most three minors older than
// the API server): its results say so (SkewNote).
const Userspace = "kube-proxy-1.25/userspace"

// UserspaceBinary is the file name of its build in bin/.
const UserspaceBinary = "kube-proxy-1.25"

// SkewNote labels every result of the Userspace datapath.
const SkewNote = "unsupported skew: kube-proxy v1.25 (userspace proxier, reading v1 Endpoints) against a v1.37 control plane"

// openFilesWanted is the RLIMIT_NOFILE the userspace proxier sets (soft and
// hard) at start, failing unless it runs in a user namespace with the
// KubeletInUserNamespace feature gate on.
const openFilesWanted = 64000

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/self/status.
const capSysResource = 24

// NoFileRaisable says whether a root process here may set RLIMIT_NOFILE to
// openFilesWanted: the hard limit is that high already, or CAP_SYS_RESOURCE
// is effective (and nr_open allows it). The reason says what was found.
func NoFileRaisable() (bool, string) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return false, fmt.Sprintf("getrlimit: %v", err)
	}
	if lim.Max >= openFilesWanted {
		return true, fmt.Sprintf("hard RLIMIT_NOFILE %d >= %d", lim.Max, openFilesWanted)
	}
	nrOpen := uint64(0)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		nrOpen, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if capEffective(capSysResource) && nrOpen >= openFilesWanted {
		return true, fmt.Sprintf("hard RLIMIT_NOFILE %d, raisable (CAP_SYS_RESOURCE, nr_open %d)", lim.Max, nrOpen)
	}
	return false, fmt.Sprintf("hard RLIMIT_NOFILE %d < %d and CAP_SYS_RESOURCE is not effective (nr_open %d)", lim.Max, openFilesWanted, nrOpen)
}

// capEffective reports whether capability bit is in this process's
// effective set.
func capEffective(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<bit) != 0
		}
	}
	return false
}

// userspaceBinary is met when bin/kube-proxy-1.25 is beside bin/k8s.
var userspaceBinary = modes.Feature{
	Name: UserspaceBinary,
	Probe: func() error {
		if _, _, err := kube.FindBinary(); err != nil {
			return fmt.Errorf("no %s: it is looked for beside bin/k8s, which is missing too", UserspaceBinary)
		}
		if _, err := kube.FindCompanion(UserspaceBinary); err != nil {
			return fmt.Errorf("no kube-proxy v1.25: %w", err)
		}
		return nil
	},
	Remedy: "`make kube-userspace` builds it (bin/kube-proxy-1.25)",
}

// userspaceDescriptor is the Userspace datapath. Where RLIMIT_NOFILE cannot
// be raised to 64000 (NoFileRaisable), kube-proxy runs in a user namespace
// owning the node's network namespace, with the KubeletInUserNamespace
// gate, the one condition under which it carries on after the failed
// setrlimit; elsewhere it runs as on a node.
func userspaceDescriptor() modes.Datapath {
	// --bind-address: the proxier listens on the node's address and
	// redirects Service traffic there; left at 0.0.0.0 it would look for
	// the interface of a default route, which a node here does not have.
	args := []string{"--proxy-mode=userspace", "--cluster-cidr=" + ClusterCIDR, "--conntrack-max-per-core=0", "--bind-address=" + modes.NodeIPArg}
	raisable, _ := NoFileRaisable()
	if !raisable {
		args = append(args, "--feature-gates=KubeletInUserNamespace=true")
	}
	return modes.Datapath{
		Name: Userspace,
		Start: modes.Start{
			Program: kube.KubeProxy, Binary: UserspaceBinary, Args: args,
			Cleanup:         []string{kube.KubeProxy, "--cleanup"},
			IPTablesBackend: kube.IPTablesNFT,
			UserNamespace:   !raisable,
			ReadsEndpoints:  true,
		},
		Needs: []modes.Feature{binary, userspaceBinary, modes.Tool("iptables-nft-restore"), modes.NfTables},
		// It exports no sync metrics: the plane's barrier reads its portal
		// rules (and the Endpoints objects, its endpoints being in memory).
		Programmed: modes.ProgrammedMetrics,
		Kernel:     modes.KernelUserspace,
		Dump:       []string{"iptables-nft-save", "-t", "nat"},
		// LoadBalancerRR: round robin over the endpoints; ClientIP
		// affinity kept per client while it keeps connecting.
		Traits: modes.Traits{Choice: modes.RoundRobin, Affinity: modes.AffinityIdle, Relay: true},
		// Beside svcsim's userspace datapath (Order 10).
		Report: modes.Report{Order: 11},
	}
}
