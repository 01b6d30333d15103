package cluster

import (
	"fmt"
	"strings"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
)

// The plane runs two kinds of node proxy, one at a time on every node: the
// genuine kube-proxy (modes/kubeproxy's datapaths, "kube-proxy/nftables")
// and svcsim's own node proxy (modes/agent) with one of svcsim's in-process
// datapaths, fed by sim/feed from the API server with the same Services and
// EndpointSlices kube-proxy reads. Results keep the two apart by name: an
// in-process datapath on this plane is named with OnPlane after its own
// name ("nftables@kubernetes"), so that its column stands beside the
// embedded plane's "nftables" and kube-proxy's "kube-proxy/nftables".

// OnPlane ends the name of svcsim's in-process datapaths on this plane.
const OnPlane = "@" + ControlPlaneName

// OwnReportOrder is added to an in-process datapath's report order on this
// plane: its column follows kube-proxy's (kubeproxy.ReportOrder).
const OwnReportOrder = 200

// k8sBinary is met when bin/k8s (the genuine control plane) is there: every
// datapath of this plane needs it.
var k8sBinary = modes.Feature{
	Name: "bin/k8s",
	Probe: func() error {
		if _, _, err := kube.FindBinary(); err != nil {
			return fmt.Errorf("no genuine control plane: %w", err)
		}
		return nil
	},
	Remedy: "`make kube` builds it (bin/k8s)",
}

// Own is the descriptor of svcsim's in-process datapath d on this plane:
// d's facts (start, traits, kernel, dump, flush) under the name
// d.Name+OnPlane, with bin/k8s among its needs and its report column after
// kube-proxy's.
func Own(d modes.Datapath) modes.Datapath {
	d.Name += OnPlane
	d.Needs = append([]modes.Feature{k8sBinary}, d.Needs...)
	d.Report.Order += OwnReportOrder
	return d
}

// OwnMode is the in-process datapath a name of this plane runs through
// svcsim's node proxy ("nftables@kubernetes" -> "nftables"), and whether
// it names one.
func OwnMode(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, OnPlane)
	if !ok {
		return "", false
	}
	d, found := modes.Lookup(base)
	if !found || d.Start.Factory == nil || len(d.AliasOf) > 0 {
		return "", false
	}
	return base, true
}

// Datapaths lists what this plane runs, in report order: the genuine
// kube-proxy's datapaths, then svcsim's own in-process ones (aliases left
// out), named with OnPlane.
func Datapaths() []modes.Datapath {
	out := kubeproxy.Datapaths()
	for _, d := range modes.Table() {
		if d.Start.Factory != nil {
			out = append(out, Own(d))
		}
	}
	return out
}

// Lookup returns the descriptor of a datapath this plane runs: a
// kube-proxy datapath ("kube-proxy/nftables") or svcsim's own
// ("nftables@kubernetes").
func Lookup(name string) (modes.Datapath, bool) {
	if _, ok := OwnMode(name); ok {
		d, _ := modes.Lookup(strings.TrimSuffix(name, OnPlane))
		return Own(d), true
	}
	if d, err := kubeproxy.Get(name); err == nil {
		return d, true
	}
	return modes.Datapath{}, false
}

// Get is Lookup with an error naming what this plane runs.
func Get(name string) (modes.Datapath, error) {
	if d, ok := Lookup(name); ok {
		return d, nil
	}
	var names []string
	for _, d := range Datapaths() {
		names = append(names, d.Name)
	}
	return modes.Datapath{}, fmt.Errorf("%q is not a datapath of the kubernetes plane: want one of %s", name, strings.Join(names, ", "))
}
