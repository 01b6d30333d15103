package scenarios

import (
	"net/netip"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/sim/seeddir"
	"github.com/svcsim/svcsim/topology"
)

// TestIngressLoadBalancer: deployment mode 1, the controller Deployment
// behind a Service of type LoadBalancer (service-nodeport.yaml with
// LoadBalancer for NodePort): the cloud gives it an address of its pool,
// the seed's requests answer there from the external namespace (through
// the cloud load balancer, a node and its datapath), and the Ingress's
// ADDRESS is that address.
func TestIngressLoadBalancer(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-loadbalancer", Title: "Ingress: ingress-nginx Deployment behind a LoadBalancer (seed mode 1)", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		mandatory := seeddir.WithTag(seeddir.Read(h.T, "mandatory.yaml"), "0.28.0")
		h.Apply(string(mandatory), string(seeddir.LoadBalancerMode(seeddir.Read(h.T, "service-nodeport.yaml"))))
		applySeedIngress(h)
		var lb netip.Addr
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if in := service(h, "ingress-nginx", "ingress-nginx").Status.LoadBalancer.Ingress; len(in) > 0 {
				lb, _ = netip.ParseAddr(in[0].IP)
				break
			}
		}
		h.Check(topology.DefaultLoadBalancerPool.Contains(lb), "the controller Service gets an address of the cloud's pool", "%v (pool %v, cloud at %s)", lb, topology.DefaultLoadBalancerPool, topology.DefaultLoadBalancerIP)
		ext := external(h)
		checkSeedRouting(h, ext, lb.String()+":80", "load balancer "+lb.String())
		_, inHost := nginxProcesses(runDir(h))
		h.Check(len(inHost) == 0, "no nginx in the host's network namespace", "pids %v", inHost)
		got := waitStatus(h, lb.String())
		h.Check(got == lb.String(), "ADDRESS is the load balancer's", "status %q, want %s", got, lb)
		n1 := h.P.Nodes()[0]
		removeController(h, harness.NewClient(n1.Name, n1.NS), lb.String()+":80")
	})
}
