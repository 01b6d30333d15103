package scenarios

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/rulediff"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
)

// ruleDiffObjects are the compared objects: a NodePort Service whose
// ClusterIP and nodePort are fixed, so that both planes give it the same
// addresses, over two getip pods pinned one to each node (kube-proxy's
// nftables hairpin set follows where endpoints run).
var ruleDiffObjects = []string{`apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  clusterIP: 10.96.100.20
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: 80
      nodePort: 30600
`, ruleDiffPod("node1"), ruleDiffPod("node2")}

func ruleDiffPod(node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: web-%[1]s
  labels:
    app: web
spec:
  nodeName: %[1]s
  containers:
    - name: getip
      image: getip
      ports:
        - containerPort: 80
`, node)
}

// ruleDiffRecordEnv, set to 1, makes the rule-diff scenario write its
// side's dump and names into modes/rulediff/testdata instead of comparing
// (run it on both sides, then `go test ./modes/rulediff -update`); set to
// a directory, there (the kernel lane's root is read-only: give it the
// results directory and copy the files over).
const ruleDiffRecordEnv = "SVCSIM_RULEDIFF_RECORD"

// ruleDiffDir is modes/rulediff/testdata beside this source file (the
// kernel lane runs the test binary elsewhere).
func ruleDiffDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "modes", "rulediff", "testdata")
}

// TestRuleDiff: the same objects (two getip pods, one per node, behind a NodePort Service
// with a fixed ClusterIP and nodePort) on svcsim's datapath and on the
// genuine kube-proxy's of the same kernel, compared as node1's rules
// normalised (package modes/rulediff: counters, hashes, the namespace and
// the addresses named, order). Each side checks its live rules against its
// recording in modes/rulediff/testdata (a change of either proxy's layout
// shows here, and is recorded again), then lists what only one side has,
// each line marked with the known difference that explains it
// (rulediff.Differences): fixed-by-test, intentional or open. The report
// shows the lists in its rule-diff section. Datapaths whose dump has no
// counterpart on the other side (userspace; IPVS until kube-proxy/ipvs runs
// in the kernel lane) record what they have and say so.
func TestRuleDiff(t *testing.T) {
	sc := harness.Scenario{Name: "rule-diff", Title: "svcsim's rules beside kube-proxy's for the same objects", Group: results.GroupProxyModes}
	opts := harness.Options{Manifests: ruleDiffObjects}
	harness.Run(t, sc, opts, func(h *harness.H) {
		format, ok := map[modes.Kernel]rulediff.Format{
			modes.KernelIptables: rulediff.IPTablesSave, modes.KernelNftables: rulediff.NFT, modes.KernelIPVS: rulediff.IPVSAdm,
		}[h.Desc.Kernel]
		if !ok || len(h.Desc.Dump) == 0 {
			h.Result.Reason = h.Mode + " has no counterpart among kube-proxy's datapaths"
			h.T.Skip(h.Result.Reason)
		}
		key := rulediff.Key(h.Desc.Dump)
		side, other := rulediff.Svcsim, rulediff.KubeProxy
		if h.KubeProxy() {
			side, other = other, side
		}
		names := ruleDiffNames(h)
		out, err := nodeClient(h, "node1").Exec(h.Ctx, h.Desc.Dump[0], h.Desc.Dump[1:]...)
		if err != nil {
			h.Fatalf("dump node1: %v", err)
		}
		live, err := rulediff.Normalise(format, out, names)
		if err != nil {
			h.Fatalf("normalise: %v", err)
		}
		h.Result.KernelState = strings.Join(live, "\n")
		dir := ruleDiffDir()
		if rec := os.Getenv(ruleDiffRecordEnv); rec != "" {
			if rec != "1" {
				dir = rec
			}
			if err := rulediff.WriteRecording(dir, side, key, format, out, names); err != nil {
				h.Fatalf("record: %v", err)
			}
			h.T.Logf("recorded %s's %s in %s", side, key, dir)
			return
		}
		mine, err := rulediff.ReadRecording(dir, side, key)
		if err != nil {
			h.Fatalf("%v (record it: %s=1)", err, ruleDiffRecordEnv)
		}
		extra, missing := rulediff.Diff(live, mine)
		h.Check(len(extra) == 0 && len(missing) == 0, string(side)+"'s rules equal its recording",
			"%d lines; only live: %q; only recorded: %q (a layout change: record again with %s=1)", len(live), extra, missing, ruleDiffRecordEnv)

		theirs, err := rulediff.ReadRecording(dir, other, key)
		if errors.Is(err, fs.ErrNotExist) {
			h.Result.RuleDiff = &results.RuleDiff{Dump: key, Missing: fmt.Sprintf("no recording of %s's %s yet", other, key)}
			h.T.Logf("no recording of %s's %s: nothing to compare", other, key)
			return
		} else if err != nil {
			h.Fatalf("%v", err)
		}
		svcsim, kube := live, theirs
		if h.KubeProxy() {
			svcsim, kube = theirs, live
		}
		onlyS, onlyK := rulediff.Diff(svcsim, kube)
		rd := &results.RuleDiff{Dump: key, Lines: len(svcsim)}
		unmarked := 0
		for _, l := range rulediff.Classify(key, onlyS, onlyK, rulediff.Differences) {
			rd.Differences = append(rd.Differences, results.RuleDiffLine{Side: string(l.Side), Text: l.Text,
				Mark: string(l.Known.Mark), Reason: l.Known.Reason, Test: l.Known.Test})
			if l.Known.Mark == "" {
				unmarked++
			}
		}
		for _, k := range rulediff.Differences {
			if k.Mark == rulediff.FixedByTest && (k.Dump == "" || k.Dump == key) {
				rd.Settled = append(rd.Settled, results.RuleDiffLine{Side: string(k.Side), Text: k.Match.String(),
					Mark: string(k.Mark), Reason: k.Reason, Test: k.Test})
			}
		}
		h.Result.RuleDiff = rd
		h.Figure("lines only svcsim has", float64(len(onlyS)), "")
		h.Figure("lines only kube-proxy has", float64(len(onlyK)), "")
		h.Check(unmarked == 0, "every difference from kube-proxy's rules is marked", "%d of %d lines unexplained (rulediff.Differences)", unmarked, len(onlyS)+len(onlyK))
	})
}

// ruleDiffNames names what the scenario's objects put into node1's rules:
// its namespace, each Service's ClusterIP and each pod's address (by its
// node), with the Service and cluster CIDRs foreign elsewhere.
func ruleDiffNames(h *harness.H) rulediff.Names {
	n := rulediff.Names{Namespace: h.NS, Addrs: map[string]string{},
		Foreign: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("10.244.0.0/16")}}
	svcs, err := h.P.List(h.Ctx, "service", h.NS, "")
	if err != nil {
		h.Fatalf("list services: %v", err)
	}
	for _, o := range svcs {
		s := o.(*corev1.Service)
		if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
			n.Addrs[s.Spec.ClusterIP] = "CLUSTER-IP(" + s.Name + ")"
		}
	}
	pods, err := h.P.Pods(h.Ctx, h.NS)
	if err != nil {
		h.Fatalf("pods: %v", err)
	}
	for _, p := range pods {
		if p.Labels["app"] == "web" {
			n.Addrs[p.IP.String()] = "POD(" + p.Node + ")"
		}
	}
	return n
}
