package addons

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"getip":      "getip",
		"nginx:1.27": "nginx",
		"registry.k8s.io/coredns/coredns:v1.12.1": "registry.k8s.io/coredns/coredns",
		"localhost:5000/app":                      "localhost:5000/app",
		"localhost:5000/app:v2@sha256:abc":        "localhost:5000/app",
		"app@sha256:abc":                          "app",
	} {
		require.Equal(t, want, Repository(in), in)
	}
}

var dns = Workload{
	Name: "dns",
	Ports: func(sim.Pod, sim.Container) []topology.Port {
		return []topology.Port{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP"}}
	},
	Start: func(context.Context, Env) (Instance, error) { return nil, nil },
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.RegisterAddOns(AddOn{Name: "dns", Workloads: map[string]Workload{"example/dns": dns}}))
	require.Equal(t, "dns", r.Lookup("example/dns:v1").Name, "tags do not matter")
	require.Equal(t, "builtin", r.Lookup("example/dnsx").Name)
	require.Equal(t, "builtin", r.Lookup("getip").Name)
	require.ErrorContains(t, r.Register("example/dns", dns), "already runs dns")
	require.ErrorContains(t, r.Register("example/dns:v2", dns), "without tag")
	require.ErrorContains(t, r.Register("x", Workload{Name: "noports"}), "no Ports")
}

func TestPlanBuiltin(t *testing.T) {
	r := NewRegistry()
	p := sim.Pod{
		Containers: []sim.Container{{Image: "getip", Ports: []sim.ContainerPort{{Port: 7080}, {Port: 9000, Protocol: "UDP"}}}},
		// A Service sends it 80 and 7080 (declared too): both served once.
		TargetPorts: []sim.ContainerPort{{Port: 80, Protocol: "TCP"}, {Port: 7080, Protocol: "TCP"}},
	}
	plan := r.Plan(p)
	want := []topology.Port{{Port: 80, Protocol: "TCP"}, {Port: 7080, Protocol: "TCP"}, {Port: 9000, Protocol: "UDP"}}
	require.Equal(t, want, plan.ServerPorts)
	require.Equal(t, want, plan.Serves)
	require.Empty(t, plan.Starts)

	// A pod without containers (as some tests write them) still gets the
	// ports Services send it.
	plan = r.Plan(sim.Pod{TargetPorts: []sim.ContainerPort{{Port: 80, Protocol: "TCP"}}})
	require.Equal(t, []topology.Port{{Port: 80, Protocol: "TCP"}}, plan.ServerPorts)
}

// A workload with its own Start owns its ports: the built-in servers of the
// same pod do not listen on them even when a Service targets them.
func TestPlanOwnWorkload(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.Register("example/dns", dns))
	p := sim.Pod{
		Containers: []sim.Container{
			{Image: "example/dns:1"},
			{Image: "sidecar", Ports: []sim.ContainerPort{{Port: 8080}}},
		},
		TargetPorts: []sim.ContainerPort{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP"}},
	}
	plan := r.Plan(p)
	require.Equal(t, []topology.Port{{Port: 8080, Protocol: "TCP"}}, plan.ServerPorts)
	require.Equal(t, []topology.Port{{Port: 53, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}, {Port: 8080, Protocol: "TCP"}}, plan.Serves)
	require.Len(t, plan.Starts, 1)
	require.Equal(t, 0, plan.Starts[0].Container)
	require.Equal(t, "dns", plan.Starts[0].Workload.Name)

	// Only the DNS container: no built-in servers at all.
	p.Containers = p.Containers[:1]
	require.Empty(t, r.Plan(p).ServerPorts)
}
