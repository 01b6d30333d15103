// Package ingress is svcsim's ingress controller add-on: a real nginx
// (Debian's package) runs wherever a manifest puts an ingress-nginx
// controller image, inside that pod's network namespace (the node's, for
// hostNetwork), configured from every Ingress of its class.
//
// The controller reads the cluster through client-go informers (so it runs
// on either plane), renders one nginx.conf (package nginxconf: a server per
// host, a location per path, upstreams to the endpoints or, with
// service-upstream, to the ClusterIP), checks it against the directives it
// was rendered from and with `nginx -t`, and only then swaps it in and
// reloads nginx gracefully (SIGHUP: the listening sockets stay, old workers
// finish their requests). Upstreams are nginx's own, so a change of
// endpoints alone is a reload too (ingress-nginx avoids those with Lua;
// svcsim measures what they cost). The default server answers 404. The
// pod answers readiness on :10254/healthz while nginx's status server
// answers. Ingresses' status shows the --publish-service Service's address
// (or the node's, for a hostNetwork controller without one).
//
// nginx runs as `nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g
// 'daemon off; pid DIR/nginx.pid;'` with every temp path under DIR, the
// workload's directory in the run; Stop ends it and removes DIR.
package ingress

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

// Images are the ingress-nginx controller image repositories the add-on
// runs nginx for: the seed era's and today's.
var Images = []string{
	"quay.io/kubernetes-ingress-controller/nginx-ingress-controller",
	"registry.k8s.io/ingress-nginx/controller",
}

// Workload is the controller as a pod's workload.
var Workload = addons.Workload{
	Name: "ingress-nginx",
	Ports: func(sim.Pod, sim.Container) []topology.Port {
		return []topology.Port{{Port: HTTPPort, Protocol: "TCP"}, {Port: HTTPSPort, Protocol: "TCP"}, {Port: HealthPort, Protocol: "TCP"}}
	},
	Start: func(ctx context.Context, env addons.Env) (addons.Instance, error) {
		pod, err := env.Client.CoreV1().Pods(env.Pod.Namespace).Get(ctx, env.Pod.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("ingress controller: read own pod: %w", err)
		}
		var args []string
		if env.Container < len(pod.Spec.Containers) {
			c := pod.Spec.Containers[env.Container]
			args = append(append(args, c.Command...), c.Args...)
		}
		return Start(ctx, env, ParseArgs(args, env.Pod.Namespace, env.Pod.Name))
	},
}

// AddOn registers the controller for its images; it applies no objects
// (ingress-nginx's own manifests bring the controller).
func AddOn() addons.AddOn {
	ws := map[string]addons.Workload{}
	for _, img := range Images {
		ws[img] = Workload
	}
	return addons.AddOn{Name: "ingress-nginx", Workloads: ws}
}
