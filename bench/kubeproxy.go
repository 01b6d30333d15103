package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// The genuine kube-proxy's own sync durations (pkg/proxy/metrics): one
// histogram for full syncs, one for partial ones, per IP family.
const (
	kpFullMetric    = "kubeproxy_sync_full_proxy_rules_duration_seconds"
	kpPartialMetric = "kubeproxy_sync_partial_proxy_rules_duration_seconds"
)

// kpMinSyncPeriod is kube-proxy's --iptables-min-sync-period for the
// benchmark (iptables and nftables modes; upstream's default is 1 s):
// svcsim's proxiers are timed from the call of Sync, with no minimum period
// in front, so kube-proxy gets none either.
const kpMinSyncPeriod = "--iptables-min-sync-period=0s"

// KubeProxyDatapaths are the genuine kube-proxy datapaths the benchmark can
// drive on the kubernetes plane, in the report's order.
func KubeProxyDatapaths() []string {
	var out []string
	for _, d := range kubeproxy.Datapaths() {
		out = append(out, d.Name)
	}
	return out
}

// isKubeProxy reports whether dp is one of the genuine kube-proxy's.
func isKubeProxy(dp string) bool { return strings.HasPrefix(dp, kubeproxy.Prefix) }

// Twin is the svcsim datapath with the same kernel and tool as kube-proxy
// datapath dp ("kube-proxy/iptables-nft": "iptables/nft"), or "": the one
// whose descriptor programs the same kernel state and dumps it with the
// same command.
func Twin(dp string) string {
	if !isKubeProxy(dp) {
		return ""
	}
	kp, err := kubeproxy.Get(dp)
	if err != nil {
		return ""
	}
	for _, d := range modes.Table() {
		if d.Start.Factory != nil && len(d.AliasOf) == 0 && d.Kernel == kp.Kernel && slices.Equal(d.Dump, kp.Dump) {
			return d.Name
		}
	}
	return ""
}

// kpSyncs is what kube-proxy's metrics count of its IPv4 syncs so far.
type kpSyncs struct {
	fullSum, fullCount, partialSum, partialCount float64
}

// parseKPSyncs reads the _sum and _count of both histograms (IPv4) from
// kube-proxy's Prometheus text metrics.
func parseKPSyncs(metrics []byte) (kpSyncs, error) {
	var s kpSyncs
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.Contains(rest, `ip_family="IPv4"`) {
			continue
		}
		var dst *float64
		switch name {
		case kpFullMetric + "_sum":
			dst = &s.fullSum
		case kpFullMetric + "_count":
			dst = &s.fullCount
		case kpPartialMetric + "_sum":
			dst = &s.partialSum
		case kpPartialMetric + "_count":
			dst = &s.partialCount
		default:
			continue
		}
		_, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return s, fmt.Errorf("kube-proxy metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return s, fmt.Errorf("kube-proxy metrics: %q: %w", line, err)
		}
		*dst = v
	}
	return s, sc.Err()
}

func kpSyncsIn(ctx context.Context, ns *netns.NS) (kpSyncs, error) {
	b, err := kube.KubeProxyMetricsIn(ctx, ns)
	if err != nil {
		return kpSyncs{}, err
	}
	return parseKPSyncs(b)
}

// kpNextSync waits until kube-proxy counts a sync more than before, and
// returns that sync's duration in ms (the _sum delta over the _count delta)
// and whether it was a full one.
func kpNextSync(ctx context.Context, ns *netns.NS, before kpSyncs) (float64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var lastErr error
	for {
		// A restarted kube-proxy serves its metrics a moment after it
		// starts: errors are retried until the deadline.
		now, err := kpSyncsIn(ctx, ns)
		lastErr = err
		if err != nil {
			now = before
		}
		if d := now.partialCount - before.partialCount; d > 0 && now.fullCount == before.fullCount {
			return 1000 * (now.partialSum - before.partialSum) / d, false, nil
		}
		if d := now.fullCount - before.fullCount; d > 0 {
			return 1000 * (now.fullSum - before.fullSum) / d, true, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, errors.Join(fmt.Errorf("kube-proxy counted no sync: %w", ctx.Err()), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// kubeProxy measures kube-proxy datapath dp on a one-node kubernetes plane
// with the same synthetic Services as the in-process datapaths (N Services
// of E endpoints, selector-less, their EndpointSlices written directly):
// per N, Reps full syncs (kube-proxy stopped, its rules cleaned up, and
// started again with the N Services present: its first sync) and Reps x Changes endpoint changes
// (an endpoint added to the last Service's slice, then removed), each
// sync's duration read from kube-proxy's own histograms as the _sum delta
// over the _count delta of that one sync.
func (r *runner) kubeProxy(ctx context.Context, dp string, s series) error {
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 1, Datapath: dp, KubeProxyArgs: []string{kpMinSyncPeriod}})
	if err != nil {
		return fmt.Errorf("start a kubernetes plane: %w", err)
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			r.fail(dp, "close the kubernetes plane", cerr)
		}
	}()
	cs := c.Client()
	node := c.Topology().Node("node1")
	if node == nil {
		return errors.New("the plane has no node1")
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: svcNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", svcNamespace, err)
	}
	have := 0
	for _, n := range r.cfg.Services {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := createServices(ctx, cs, have, n, r.cfg.Endpoints); err != nil {
			return err
		}
		have = n
		if err := c.WaitProgrammed(ctx); err != nil {
			return err
		}
		r.logf("bench: %-16s N=%-6d %d Services written and programmed in %s", dp, n, n, time.Since(t0).Round(time.Millisecond))
		var full, changes, stray []float64
		for range r.cfg.Reps {
			// Stopped with --cleanup: the first sync starts from an empty
			// namespace, as the in-process datapaths' full sync does.
			if err := c.StopProxy(ctx, "node1"); err != nil {
				return err
			}
			if err := c.StartProxy(ctx, "node1"); err != nil {
				return err
			}
			d, isFull, err := kpNextSync(ctx, node.NS, kpSyncs{})
			if err != nil {
				return fmt.Errorf("first sync after a restart: %w", err)
			}
			if !isFull {
				return errors.New("kube-proxy's first sync after a restart was not a full one")
			}
			full = append(full, d)
			if err := c.WaitProgrammed(ctx); err != nil {
				return err
			}
			target := n - 1
			base := make([]string, r.cfg.Endpoints)
			for j := range base {
				base[j] = SyntheticEndpoint(target*r.cfg.Endpoints + j).String()
			}
			extra := append(append([]string(nil), base...), extraEndpoint(n, r.cfg.Endpoints).IP.String())
			for range r.cfg.Changes {
				for _, addrs := range [][]string{extra, base} {
					before, err := kpSyncsIn(ctx, node.NS)
					if err != nil {
						return err
					}
					if err := writeSlice(ctx, cs, ServiceName(target), addrs, true); err != nil {
						return err
					}
					d, isFull, err := kpNextSync(ctx, node.NS, before)
					if err != nil {
						return fmt.Errorf("sync of an endpoint change: %w", err)
					}
					if isFull {
						stray = append(stray, d) // a periodic full sync fell on the change
						continue
					}
					changes = append(changes, d)
				}
			}
		}
		fp := point(n, full, false, map[string]float64{"min_sync_period_s": 0})
		cp := point(n, changes, false, map[string]float64{"full_syncs_instead": float64(len(stray))})
		if cp.Median > 0 {
			cp.Extra["full_over_change"] = fp.Median / cp.Median
		}
		s.add(MetricFullSync, fp)
		s.add(MetricEndpointChange, cp)
		r.logf("bench: %-16s N=%-6d full %9.2f ms  change %8.3f ms  (kube-proxy's metrics)", dp, n, fp.Median, cp.Median)
	}
	return nil
}

// createServices writes Services from..to-1 of the synthetic plan
// (selector-less, port 80 to 8080) with one EndpointSlice each, from 8
// workers (the client's rate limit bounds them).
func createServices(ctx context.Context, cs kubernetes.Interface, from, to, e int) error {
	work := make(chan int)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: ServiceName(i), Namespace: svcNamespace},
					Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: svcPort, TargetPort: intstr.FromInt32(TargetPort), Protocol: corev1.ProtocolTCP}}},
				}
				if _, err := cs.CoreV1().Services(svcNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errc <- fmt.Errorf("create Service %s: %w", svc.Name, err)
					return
				}
				addrs := make([]string, e)
				for j := range addrs {
					addrs[j] = SyntheticEndpoint(i*e + j).String()
				}
				if err := writeSlice(ctx, cs, ServiceName(i), addrs, false); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := from; i < to; i++ {
		select {
		case work <- i:
		case err = <-errc:
			break loop
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// writeSlice creates (or, with update, replaces) Service name's one
// EndpointSlice with ready endpoints at addrs, port 8080.
func writeSlice(ctx context.Context, cs kubernetes.Interface, name string, addrs []string, update bool) error {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: svcNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "svcsim-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To(int32(TargetPort)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	api := cs.DiscoveryV1().EndpointSlices(svcNamespace)
	var err error
	if update {
		_, err = api.Update(ctx, sl, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, sl, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write EndpointSlice %s: %w", name, err)
	}
	return nil
}

// kubeProxyNote says how a kube-proxy metric was measured.
func kubeProxyNote(m, load string) string {
	switch m {
	case MetricFullSync:
		return "the genuine kube-proxy on a one-node kubernetes plane (" + kpMinSyncPeriod + ") with the same N Services of E endpoints (selector-less, EndpointSlices written directly): stopped, kube-proxy --cleanup, started again with them present; its first sync's duration from its own metrics (" + kpFullMetric + " _sum delta over _count delta, IPv4)" + load
	case MetricEndpointChange:
		return "one endpoint added to / removed from the last Service's EndpointSlice with N present: the duration of the sync it caused, from kube-proxy's own metrics (" + kpPartialMetric + " _sum delta over _count delta, IPv4, polled every 10 ms until the count moved; a periodic full sync falling on a change is left out and counted in Extra)" + load
	}
	return ""
}
