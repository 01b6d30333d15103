package clusterdns

import (
	"context"
	"fmt"
	"net"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

// ServiceIP is the kube-dns Service's ClusterIP, kubeadm's default.
const ServiceIP = "10.96.0.10"

// Image is the kube-dns Deployment's image: the DNS server runs in place of
// CoreDNS for it (and for svcsim's own name for it, Image's repository
// "svcsim/clusterdns").
const Image = "registry.k8s.io/coredns/coredns:v1.12.1"

// Manifests are the add-on's objects, kubeadm's CoreDNS deployment reduced
// to what Service networking needs.
var Manifests = KubeDNS{Image: Image, ServiceIP: ServiceIP}.Manifests()

// Workload is the DNS server as a pod's workload: it watches the cluster
// through the pod's client and answers on port 53 of the pod.
func Workload(domain string) addons.Workload { return workload(domain, "0.0.0.0:53") }

func workload(domain, addr string) addons.Workload {
	return addons.Workload{
		Name: "clusterdns",
		Ports: func(sim.Pod, sim.Container) []topology.Port {
			return []topology.Port{{Port: 53, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}
		},
		Start: func(ctx context.Context, env addons.Env) (addons.Instance, error) {
			w, err := Watch(ctx, env.Client, domain)
			if err != nil {
				return nil, err
			}
			srv, err := StartOn(env.NS, addr, w.Records)
			if err != nil {
				w.Stop()
				return nil, err
			}
			return &instance{w: w, srv: srv}, nil
		},
	}
}

type instance struct {
	w   *Watcher
	srv *Server
}

// Addr is where the server answers.
func (i *instance) Addr() net.Addr { return i.srv.Addr() }

func (i *instance) Stop() error {
	err := i.srv.Close()
	i.w.Stop()
	if err != nil {
		return fmt.Errorf("stop DNS server: %w", err)
	}
	return nil
}

// AddOn is cluster DNS for domain ("cluster.local"): the kube-dns objects
// and the DNS server for their image.
func AddOn(domain string) addons.AddOn {
	w := Workload(domain)
	return addons.AddOn{
		Name:      "cluster-dns",
		Manifests: []byte(Manifests),
		Workloads: map[string]addons.Workload{
			addons.Repository(Image): w,
			"svcsim/clusterdns":      w,
		},
	}
}
