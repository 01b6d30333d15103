package bench

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/report/results"
)

// A piece of kube-proxy v1.37's /metrics: both sync histograms for IPv4
// and IPv6, and a metric whose name starts like one of them.
const kpMetrics = `# HELP kubeproxy_sync_full_proxy_rules_duration_seconds [ALPHA] SyncProxyRules latency in seconds for full resyncs
# TYPE kubeproxy_sync_full_proxy_rules_duration_seconds histogram
kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"} 0
kubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv4"} 0.812
kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"} 2
kubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv6"} 9
kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv6"} 9
kubeproxy_sync_partial_proxy_rules_duration_seconds_sum{ip_family="IPv4"} 0.25
kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"} 5
kubeproxy_sync_proxy_rules_duration_seconds_sum{ip_family="IPv4"} 7
`

func TestParseKubeProxySyncs(t *testing.T) {
	s, err := parseKPSyncs([]byte(kpMetrics))
	require.NoError(t, err)
	require.Equal(t, kpSyncs{fullSum: 0.812, fullCount: 2, partialSum: 0.25, partialCount: 5}, s, "IPv4 only, the two histograms only")
	_, err = parseKPSyncs([]byte(`kubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv4"} x` + "\n"))
	require.Error(t, err)
}

func TestTwinAndRatios(t *testing.T) {
	require.Equal(t, "iptables/nft", Twin("kube-proxy/iptables-nft"))
	require.Equal(t, "iptables/legacy", Twin("kube-proxy/iptables-legacy"))
	require.Equal(t, "nftables", Twin("kube-proxy/nftables"))
	require.Empty(t, Twin("nftables"))

	pt := func(n int, m float64) []results.Point { return []results.Point{{N: n, Median: m}} }
	s := &Summary{Benches: []results.Bench{
		{Datapath: "nftables", Metric: MetricFullSync, Points: pt(100, 50)},
		{Datapath: "nftables", Metric: MetricEndpointChange, Points: pt(100, 10)},
		{Datapath: "nftables", Metric: MetricFloorNft, Points: pt(100, 40)},
		{Datapath: "nftables", Metric: MetricFloorNftChange, Points: pt(100, 8)},
		{Datapath: "kube-proxy/nftables", Metric: MetricFullSync, Points: pt(100, 100)},
		{Datapath: "kube-proxy/nftables", Metric: MetricEndpointChange, Points: pt(100, 40)},
	}}
	var buf bytes.Buffer
	require.NoError(t, s.WriteTable(&buf))
	require.Regexp(t, `nftables / kube-proxy/nftables +100 +50\.0 +100 +0\.500x +10\.0 +40\.0 +0\.250x +2\.50x +5\.00x`, buf.String())
}
