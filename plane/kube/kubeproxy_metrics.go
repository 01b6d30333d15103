package kube

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
)

// KubeProxySync is what kube-proxy's metrics say about its rule syncs for
// one IP family: when a sync was last requested (a change arrived) and when
// one last completed.
type KubeProxySync struct {
	Queued, Synced time.Time
}

// Programmed reports whether the last completed sync started after the last
// request: every change kube-proxy has received is in the kernel. A change
// it has not received yet (its watch lags the API server) is not covered:
// a barrier also checks that the sync request came after the change.
func (s KubeProxySync) Programmed() bool {
	return !s.Synced.IsZero() && !s.Synced.Before(s.Queued)
}

// Metric names kube-proxy serves on KubeProxyMetricsAddr.
const (
	metricSynced = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
	metricQueued = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
)

// ParseKubeProxySync reads the sync timestamps per ip_family ("IPv4",
// "IPv6") from kube-proxy's Prometheus text metrics.
func ParseKubeProxySync(metrics []byte) (map[string]KubeProxySync, error) {
	out := map[string]KubeProxySync{}
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || (name != metricSynced && name != metricQueued) {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("kube-proxy metrics: malformed line %q", line)
		}
		family := ""
		for _, l := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(l, `ip_family="`); ok {
				family = strings.TrimSuffix(v, `"`)
			}
		}
		secs, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("kube-proxy metrics: %q: %w", line, err)
		}
		whole, frac := math.Modf(secs)
		ts := time.Unix(int64(whole), int64(frac*1e9))
		s := out[family]
		if name == metricSynced {
			s.Synced = ts
		} else {
			s.Queued = ts
		}
		out[family] = s
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kube-proxy metrics: %w", err)
	}
	return out, nil
}

// KubeProxySyncIn fetches the sync timestamps of the kube-proxy running in
// ns (its metrics on KubeProxyMetricsAddr, inside ns).
func KubeProxySyncIn(ctx context.Context, ns *netns.NS) (map[string]KubeProxySync, error) {
	b, err := KubeProxyMetricsIn(ctx, ns)
	if err != nil {
		return nil, err
	}
	return ParseKubeProxySync(b)
}

// KubeProxyMetricsIn fetches the Prometheus text metrics of the kube-proxy
// running in ns (KubeProxyMetricsAddr, inside ns).
func KubeProxyMetricsIn(ctx context.Context, ns *netns.NS) ([]byte, error) {
	client := plainClient(ns)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+KubeProxyMetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kube-proxy metrics in %s: %w", ns.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kube-proxy metrics in %s: %s", ns.Name(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("kube-proxy metrics in %s: %w", ns.Name(), err)
	}
	return b, nil
}
