package harness

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// KubeEnv, set to 1, adds the genuine kube-proxy's datapaths (the
// kubernetes plane, package plane/kube/cluster) to the default mode table;
// SVCSIM_MODES may also name them one by one ("kube-proxy/nftables").
const KubeEnv = "SVCSIM_KUBE"

// external reports whether d runs on the kubernetes plane: the genuine
// kube-proxy's datapaths (a program) and svcsim's own there
// ("nftables@kubernetes", svcsim's node proxy fed from the API server).
func external(d modes.Datapath) bool { return OnKube(d) }

// OnKube reports whether d runs on the kubernetes plane
// (plane/kube/cluster): kube-proxy's datapaths and svcsim's own named with
// cluster.OnPlane.
func OnKube(d modes.Datapath) bool {
	_, own := cluster.OwnMode(d.Name)
	return d.Start.Program != "" || own
}

// genuineKubeProxy reports whether d is the genuine kube-proxy's.
func genuineKubeProxy(d modes.Datapath) bool { return d.Start.Program != "" }

// withKube reports whether the default table includes external datapaths.
func withKube() bool { return os.Getenv(KubeEnv) == "1" }

// kubeShared is the kubernetes plane every scenario of the test binary
// that does not own its cluster runs on: one control plane for the whole
// run, each scenario in its own namespaces. Changing datapath stops the
// proxy on every node, cleans up (`kube-proxy --cleanup`; svcsim's node
// proxies remove their rules as they stop) and starts the next one
// (cluster.Cluster.SetDatapath).
// Scenarios take it in turns: acquire holds it until release.
type kubeShared struct {
	turn sync.Mutex // held by the scenario running on it
	mu   sync.Mutex
	c    *cluster.Cluster
	n    int
	log  switchLog
}

var kubePool = &kubeShared{}

func kubeDatapath(d modes.Datapath) (modes.Datapath, error) {
	return cluster.Get(d.Name)
}

// acquire takes the shared kubernetes plane for t, whose namespace is ns,
// on datapath d with at least nodes nodes (a larger count restarts it).
func (k *kubeShared) acquire(ctx context.Context, t *testing.T, d modes.Datapath, nodes int, ns string) (plane.Plane, error) {
	kd, err := kubeDatapath(d)
	if err != nil {
		return nil, err
	}
	k.turn.Lock()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log.set(t)
	if k.c != nil && nodes > k.n {
		err := k.c.Close()
		k.c = nil
		if err != nil {
			k.turn.Unlock()
			return nil, fmt.Errorf("restart the kubernetes plane with %d nodes: %w", nodes, err)
		}
	}
	if k.c == nil {
		begin := time.Now()
		c, err := cluster.Start(ctx, cluster.Options{Nodes: nodes, Datapath: kd.Name, Log: &k.log})
		if err != nil {
			k.turn.Unlock()
			return nil, err
		}
		t.Logf("kubernetes plane up in %v", time.Since(begin).Round(time.Millisecond))
		k.c, k.n = c, nodes
		return c, nil
	}
	begin := time.Now()
	if err := k.c.SetDatapath(ctx, kd.Name); err != nil {
		k.turn.Unlock()
		return nil, fmt.Errorf("switch kube-proxy to %s: %w", kd.Name, err)
	}
	t.Logf("kube-proxy on %s after %v", kd.Name, time.Since(begin).Round(time.Millisecond))
	if err := waitNamespaceGone(ctx, k.c, ns); err != nil {
		k.turn.Unlock()
		return nil, err
	}
	return k.c, nil
}

// waitNamespaceGone waits until no Namespace ns exists. release leaves a
// deleted namespace once its pods, Services and EndpointSlices are gone
// (the plane's barrier does not wait for the namespace controller's next
// pass either); a later run of the same scenario on the same datapath
// reuses its name and waits here.
func waitNamespaceGone(ctx context.Context, c *cluster.Cluster, ns string) error {
	for {
		_, err := c.Client().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s of an earlier run still there (%v): %w", ns, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// release deletes the scenario's namespace and its objects at once
// (cluster.DeleteNamespace: not at the namespace controller's pace), waits
// until its pods and EndpointSlices are gone and hands the plane on.
func (k *kubeShared) release(t *testing.T, ns string) {
	defer k.turn.Unlock()
	defer k.log.set(nil)
	k.mu.Lock()
	c := k.c
	k.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := c.DeleteNamespace(ctx, ns)
	if err == nil {
		err = namespaceEmptied(ctx, c, ns)
	}
	if err != nil {
		t.Errorf("kubernetes plane: %v", err)
	}
}

// Close tears the shared kubernetes plane down.
func (k *kubeShared) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		return nil
	}
	err := k.c.Close()
	k.c = nil
	return err
}

// KubeNodeGracePeriod is the node lifecycle controller's
// --node-monitor-grace-period on a kubernetes plane of a scenario with
// Options.NodeFaults: long enough that a busy 2-core machine never misses
// a healthy node's Lease renewal (every 3 s then), short enough that a lost
// node is noticed without a minute's wait.
const KubeNodeGracePeriod = 15 * time.Second

// startKube starts a kubernetes plane of the scenario's own (with a short
// node grace period when nodeFaults).
func startKube(ctx context.Context, t *testing.T, d modes.Datapath, nodes int, nodeFaults bool) (plane.Plane, error) {
	kd, err := kubeDatapath(d)
	if err != nil {
		return nil, err
	}
	o := cluster.Options{Nodes: nodes, Datapath: kd.Name, Log: testLog{t}}
	if nodeFaults {
		o.NodeMonitorGracePeriod = KubeNodeGracePeriod
	}
	return cluster.Start(ctx, o)
}

// Kubernetes reports whether the scenario runs on the kubernetes plane
// (the genuine API server, with kube-proxy's datapath or svcsim's own).
func (h *H) Kubernetes() bool { return external(h.Desc) }

// KubeProxy reports whether the genuine kube-proxy programs the nodes (not
// svcsim's node proxy).
func (h *H) KubeProxy() bool { return genuineKubeProxy(h.Desc) }

// KubeException marks a scenario that asserts something of svcsim's node
// proxy: with the genuine kube-proxy it is skipped with why, which names
// the upstream code that explains the difference.
func (h *H) KubeException(why string) {
	h.T.Helper()
	if genuineKubeProxy(h.Desc) {
		if h.Result.ControlPlane == "" {
			h.Result.ControlPlane = cluster.ControlPlaneName
		}
		h.Result.Reason = "svcsim-specific on the kubernetes plane: " + why
		h.T.Skip(h.Result.Reason)
	}
}
