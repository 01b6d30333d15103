package embedded

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

const probeManifests = `apiVersion: apps/v1
kind: Deployment
metadata: {name: probe, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      containers: [{name: probe, image: "example/probe:v1"}]
`

// probe is a workload that records what the seam gives it.
type probe struct {
	mu      sync.Mutex
	started []addons.Env
	stopped int
	fail    error
}

func (p *probe) workload() addons.Workload {
	return addons.Workload{
		Name:  "probe",
		Ports: func(sim.Pod, sim.Container) []topology.Port { return []topology.Port{{Port: 9999, Protocol: "TCP"}} },
		Start: func(ctx context.Context, env addons.Env) (addons.Instance, error) {
			if p.fail != nil {
				return nil, p.fail
			}
			// The client shows the pod the workload runs in.
			if _, err := env.Client.CoreV1().Pods(env.Pod.Namespace).Get(ctx, env.Pod.Name, metav1.GetOptions{}); err != nil {
				return nil, err
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			p.started = append(p.started, env)
			return p, nil
		},
	}
}

func (p *probe) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped++
	return nil
}

func startWith(t *testing.T, p *probe) (*ControlPlane, error) {
	t.Helper()
	privtest.HostUntouched(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cfg := DefaultConfig("nftables", 1)
	cfg.DNS = false
	cfg.AddOns = []addons.AddOn{{Name: "probe", Manifests: []byte(probeManifests),
		Workloads: map[string]addons.Workload{"example/probe": p.workload()}}}
	cp, err := Start(ctx, cfg)
	if cp != nil {
		t.Cleanup(func() { require.NoError(t, cp.Close()) })
	}
	return cp, err
}

// An add-on's workload is started in its pod with the pod's namespace and
// the cluster's client, and stopped when the pod goes; the pod's built-in
// servers leave its ports alone.
func TestAddOnWorkloadLifecycle(t *testing.T) {
	p := &probe{}
	cp, err := startWith(t, p)
	require.NoError(t, err)
	require.Len(t, p.started, 1)
	env := p.started[0]
	pod := cp.Topology().Pod(env.Pod.Key())
	require.NotNil(t, pod)
	require.Equal(t, pod.NS, env.NS, "the pod's own namespace")
	require.Empty(t, pod.Ports, "no built-in servers in the probe's pod")

	ctx := context.Background()
	require.NoError(t, cp.Scale(ctx, plane.Ref{Kind: "deployment", Namespace: "default", Name: "probe"}, 0))
	require.NoError(t, cp.WaitProgrammed(ctx))
	require.Equal(t, 1, p.stopped)
	require.Nil(t, cp.Topology().Pod(env.Pod.Key()))
}

// A workload that fails to start fails the change, and its pod does not
// stay behind half made.
func TestAddOnWorkloadStartFails(t *testing.T) {
	p := &probe{fail: errors.New("no luck")}
	cp, err := startWith(t, p)
	require.ErrorContains(t, err, "start probe in pod default/probe-")
	require.ErrorContains(t, err, "no luck")
	require.Nil(t, cp)
}

func TestMain(m *testing.M) {
	// The node proxies are this binary, re-executed (package modes/agent).
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
