//go:build ignore

// genfixture writes the report's test fixture, report/testdata/results: a
// hand-made results directory that exercises every section of the report
// (several modes, a mode skipped with a reason, a failure, a missing cell,
// distributions, affinity, benches with floors). The figures are invented
// but self-consistent (chi-square statistics and p-values match the counts).
//
//	go run report/testdata/genfixture.go
package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/svcsim/svcsim/report/results"
)

var (
	dir   = filepath.Join("report", "testdata", "results")
	start = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	host  = results.Env{
		Lane: "host", Kernel: "6.18.0-svcsim", CPU: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", CPUs: 2,
		Iptables: "iptables v1.8.9 (nf_tables)", Nft: "nftables v1.0.6 (Lester Gooch #5)", Time: start,
	}
	modeNames = []string{"userspace", "iptables/legacy", "iptables/nft", "ipvs", "nftables", "kube-proxy/nftables"}
	// infos is what each datapath's descriptor records in its results.
	infos = map[string]*results.DatapathInfo{
		"userspace":       {Order: 10},
		"iptables/legacy": {Order: 21, Claim: results.ClaimNotIncremental},
		"iptables/nft":    {Order: 22, Claim: results.ClaimNotIncremental},
		"ipvs":            {Order: 30, Claim: results.ClaimIncremental},
		"nftables":        {Order: 40},
		// the genuine kube-proxy on the kubernetes plane, after svcsim's own
		"kube-proxy/nftables": {Order: 102},
	}
	// embedded and kube are what the two control planes record (plane.Info).
	embedded = map[string]string{"svcsim": "(devel)"}
	kube     = map[string]string{
		"coredns": "1.15.0", "etcd": "3.7.3", "kube-apiserver": "v1.37.2", "kube-controller-manager": "v1.37.2",
		"kube-proxy": "v1.37.2", "kube-scheduler": "v1.37.2", "kubectl": "v1.37.2", "kubelet": "svcsim (devel)",
		"nft": "nftables v1.0.6 (Lester Gooch #5)",
	}
)

type scenario struct{ name, title, group string }

var scenarios = []scenario{
	{"clusterip-basic", "ClusterIP reaches a backend Pod", results.GroupService},
	{"nodeport-30080", "NodePort 30080 reachable from outside as NODE_IP:30080", results.GroupService},
	{"session-affinity-clientip", "sessionAffinity: ClientIP pins a client to one Pod", results.GroupService},
	{"selectorless-external", "Selectorless Service with a hand-written Endpoints object", results.GroupSelectorless},
	{"distribution-uniform", "Requests spread over backends as the mode promises", results.GroupProxyModes},
	{"multiport-named", "Named ports http 80->9376 and https 443->9377", results.GroupMultiPort},
	{"discovery-env", "{SVCNAME}_SERVICE_HOST/PORT in a new Pod's environment", results.GroupDiscovery},
	{"headless-dns", "Headless Service resolves to every ready Pod IP", results.GroupHeadless},
	{"ingress-host-routing", "Ingress routes by host to two Services", results.GroupIngress},
}

func main() {
	if err := os.RemoveAll(dir); err != nil {
		log.Fatal(err)
	}
	must(results.WriteEnv(dir, host))
	for si, sc := range scenarios {
		for mi, m := range modeNames {
			if sc.name == "ingress-host-routing" && m == "nftables" {
				continue // a missing cell: this pair never wrote a result
			}
			r := results.Result{
				Scenario: sc.name, Title: sc.title, Group: sc.group, Mode: m, Status: results.Pass,
				Started: start.Add(time.Duration(si*len(modeNames)+mi) * 7 * time.Second),
				Seconds: 1.5 + float64((si*7+mi*3)%10)/4, Env: host, Info: infos[m],
				ControlPlane: "embedded", Versions: embedded,
			}
			if m == "kube-proxy/nftables" {
				r.ControlPlane, r.Versions = "kubernetes", kube
				r.Seconds += 17
			}
			fill(&r)
			must(results.WriteResult(dir, r))
		}
	}
	benches()
}

func fill(r *results.Result) {
	if r.Mode == "ipvs" {
		r.Status, r.Reason, r.Seconds = results.Skip, "kernel lacks IP_VS (modprobe ip_vs: module not found in 6.18.0-svcsim); the kernel lane was not run", 0
		return
	}
	r.Assertions = []results.Assertion{{Name: "reached a backend", OK: true, Detail: "200 OK from 10.244.1.3"}}
	switch r.Scenario {
	case "clusterip-basic":
		r.Assertions = append(r.Assertions, results.Assertion{Name: "source IP preserved", OK: true})
		r.Figures = []results.Figure{{Name: "requests", Value: 20}, {Name: "first request", Value: 0.41, Unit: "ms"}}
		r.KernelState = kernelState(r.Mode)
	case "nodeport-30080":
		if r.Mode == "userspace" {
			r.Status, r.Reason = results.Skip, "userspace proxy does not implement NodePort on the node's underlay address in svcsim"
			r.Assertions = nil
		}
	case "session-affinity-clientip":
		exp := map[string]float64{"userspace": 10.9, "iptables/legacy": 11.6, "iptables/nft": 11.2, "nftables": 10.4, "kube-proxy/nftables": 10.7}[r.Mode]
		r.Affinity = &results.Affinity{Requests: 200, OnPinned: 200, Stickiness: 1, TimeoutSeconds: 10, ObservedExpirySeconds: exp}
		r.Assertions = append(r.Assertions, results.Assertion{Name: "all 200 requests on the pinned Pod", OK: true},
			results.Assertion{Name: "another Pod reached after timeoutSeconds", OK: true, Detail: fmt.Sprintf("after %.1f s idle", exp)})
	case "distribution-uniform":
		counts := map[string][]int{
			"userspace":           {1000, 1000, 1000},
			"iptables/legacy":     {1012, 975, 1013},
			"iptables/nft":        {1041, 969, 990},
			"nftables":            {1092, 1010, 898},
			"kube-proxy/nftables": {1017, 1002, 981},
		}[r.Mode]
		d := &results.Distribution{Requests: 3000, Test: "chi-square goodness of fit vs uniform", DF: 2, Alpha: 0.001}
		for i, c := range counts {
			d.Backends = append(d.Backends, results.BackendCount{Backend: fmt.Sprintf("10.244.%d.3", i+1), Count: c, Expected: 1000})
			d.Statistic += float64((c-1000)*(c-1000)) / 1000
		}
		d.Statistic = math.Round(d.Statistic*1000) / 1000
		d.PValue = math.Exp(-d.Statistic / 2) // chi-square survival function for df=2
		if r.Mode == "userspace" {
			d.RoundRobin, d.Exact = true, true
		}
		r.Distribution = d
		ok := d.PValue >= d.Alpha
		r.Assertions = append(r.Assertions, results.Assertion{Name: "chi-square p >= alpha", OK: ok, Detail: fmt.Sprintf("chi2=%.3f df=2 p=%.3g", d.Statistic, d.PValue)})
		r.Figures = []results.Figure{{Name: "chi-square", Value: d.Statistic}, {Name: "p-value", Value: d.PValue}}
		if !ok {
			r.Status = results.Fail
			r.Reason = fmt.Sprintf("distribution not uniform: chi-square %.3f (df 2), p=%.2g < alpha 0.001", d.Statistic, d.PValue)
		}
	case "multiport-named":
		r.Assertions = append(r.Assertions, results.Assertion{Name: "https 443 reaches targetPort 9377", OK: true})
	}
}

func kernelState(mode string) string {
	switch mode {
	case "nftables", "kube-proxy/nftables":
		return `table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.20 . tcp . 80 : goto service-ULMVA6XW-default/getip-service/tcp/http }
	}
	chain service-ULMVA6XW-default/getip-service/tcp/http {
		ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-default/getip-service/tcp/http__10.244.1.3/80, 1 : goto endpoint-6DFCN7QH-default/getip-service/tcp/http__10.244.2.3/80 }
	}
}`
	case "userspace":
		return `*nat
:SVCSIM-PORTALS - [0:0]
-A SVCSIM-PORTALS -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 41235
COMMIT`
	}
	return `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ULMVA6XWUVLBQ6IX - [0:0]
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/getip-service:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-ULMVA6XWUVLBQ6IX
-A KUBE-SVC-ULMVA6XWUVLBQ6IX -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-5OJB2KTYK3QGMHQS
-A KUBE-SVC-ULMVA6XWUVLBQ6IX -j KUBE-SEP-6DFCN7QHBM4SXJ2E
-A KUBE-SEP-5OJB2KTYK3QGMHQS -p tcp -m tcp -j DNAT --to-destination 10.244.1.3:80
COMMIT`
}

var ns = []int{100, 1000, 5000, 10000}

func series(dp, metric, unit string, med []float64, note string) results.Bench {
	b := results.Bench{Datapath: dp, Metric: metric, Unit: unit, XLabel: "Services", Env: host, Note: note}
	for i, n := range ns {
		if i >= len(med) {
			break
		}
		m := med[i]
		b.Points = append(b.Points, results.Point{N: n, Reps: 5, Median: m, Min: round(m * 0.91), Max: round(m * 1.12)})
	}
	return b
}

func round(v float64) float64 { return math.Round(v*1000) / 1000 }

func benches() {
	var bs []results.Bench
	add := func(b results.Bench) { bs = append(bs, b) }
	add(series("iptables/legacy", "full-sync", "ms", []float64{28, 190, 930, 1980}, ""))
	add(series("iptables/nft", "full-sync", "ms", []float64{35, 260, 1250, 2600}, ""))
	add(series("nftables", "full-sync", "ms", []float64{12, 60, 290, 590}, ""))
	add(series("userspace", "full-sync", "ms", []float64{40, 310, 1400, 2900}, ""))
	add(series("iptables/legacy", "endpoint-change", "ms", []float64{22, 160, 820, 1700}, ""))
	add(series("iptables/nft", "endpoint-change", "ms", []float64{8.1, 9.0, 10.2, 11.5}, "iptables-nft restores only the changed chains"))
	add(series("nftables", "endpoint-change", "ms", []float64{3.1, 3.3, 3.4, 3.6}, ""))
	add(series("userspace", "endpoint-change", "ms", []float64{25, 170, 860, 1800}, ""))
	add(series("iptables/legacy", "floor-restore", "ms", []float64{20, 150, 760, 1580}, "iptables-legacy-restore of the same ruleset, no proxy logic"))
	add(series("iptables/nft", "floor-restore", "ms", []float64{30, 230, 1100, 2300}, "iptables-nft-restore of the same ruleset, no proxy logic"))
	add(series("nftables", "floor-nft", "ms", []float64{10, 52, 250, 520}, "nft -f of the same ruleset, no proxy logic"))
	for dp, p := range map[string][][3]float64{
		"iptables/legacy": {{0.21, 0.26, 0.35}, {0.27, 0.33, 0.44}, {0.45, 0.55, 0.71}, {0.62, 0.78, 1.05}},
		"iptables/nft":    {{0.25, 0.31, 0.4}, {0.33, 0.41, 0.55}, {0.6, 0.72, 0.95}, {0.9, 1.1, 1.4}},
		"nftables":        {{0.18, 0.22, 0.3}, {0.18, 0.22, 0.31}, {0.19, 0.23, 0.31}, {0.19, 0.24, 0.33}},
		"userspace":       {{0.45, 0.6, 0.9}, {0.46, 0.61, 0.92}, {0.46, 0.63, 0.95}, {0.47, 0.64, 0.97}},
	} {
		b := results.Bench{Datapath: dp, Metric: "first-packet", Unit: "ms", XLabel: "Services", Env: host}
		for i, n := range ns {
			b.Points = append(b.Points, results.Point{N: n, Reps: 200, Median: p[i][0], Min: round(p[i][0] * 0.8), Max: round(p[i][2] * 1.6), P90: p[i][1], P99: p[i][2]})
		}
		add(b)
	}
	add(series("iptables/legacy", "convergence", "ms", []float64{120, 340, 1150, 2100}, "API change until every node serves the new endpoint"))
	add(series("iptables/nft", "convergence", "ms", []float64{110, 130, 150, 170}, ""))
	add(series("nftables", "convergence", "ms", []float64{95, 100, 104, 110}, ""))
	for dp, v := range map[string][]float64{
		"iptables/legacy": {21000, 20600, 19800, 19100},
		"iptables/nft":    {20800, 20100, 19000, 17900},
		"nftables":        {21500, 21400, 21400, 21300},
		"userspace":       {6400, 6350, 6300, 6300},
	} {
		add(series(dp, "rps-keepalive", "req/s", v, ""))
	}
	for _, b := range bs {
		b.Info = infos[b.Datapath]
		must(results.WriteBench(dir, b))
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
