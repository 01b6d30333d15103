// Package gateway is svcsim's Gateway API controller: the Gateways of its
// GatewayClass (gateway.networking.k8s.io/v1) and the HTTPRoutes attached
// to them served by a real nginx, the same Debian nginx the ingress
// controller runs (package addons/ingress: its process handling, and
// package nginxconf's quoting, formatting and parse-back check of every
// directive before `nginx -t`).
//
// One controller pod (the svcsim-gateway Deployment of Manifests, in
// namespace svcsim-gateway-system) serves every Gateway of the class. For
// each Gateway it provisions a Service of type LoadBalancer in that
// namespace (gw-<hash of namespace/name>) with one port per listener port,
// each sent to a port of its own on the controller pod (PodPortBase
// upwards), so every Gateway gets its own address from the cloud load
// balancer's pool, reached through the node's datapath like any
// LoadBalancer Service; that address is the Gateway's status address. On
// each pod port nginx holds a virtual host per hostname (the listeners'
// and routes' hostnames intersected; a default server for the rest) whose
// locations follow the Gateway API's precedence: Exact, then the longest
// PathPrefix (element-wise), then method, header and query matches, then
// the oldest route. Rules reach an internal location each that proxies to
// an upstream of the backends' ready endpoints, weighted so that each
// backendRef gets its weight's share, with the request header changes, or
// answers a redirect.
//
// Status is written as the conformance tests read it: GatewayClass
// Accepted; Gateway Accepted and Programmed (once nginx serves it and the
// load balancer gave an address) with its addresses; each listener's
// Accepted, ResolvedRefs, Conflicted, Programmed, supportedKinds and
// attachedRoutes; each route's parent statuses with Accepted and
// ResolvedRefs and their reasons; every condition with the object's
// generation as observedGeneration.
//
// What is left out, as the extended features they are: regular-expression
// paths and header matches, URL rewrites, mirrors, response header
// changes, CORS, timeouts, retries, redirect path changes, backend filters
// (a route using them is not Accepted: UnsupportedValue). Header names
// matched or changed must be letters, digits and "-" (nginx's variable
// names).
package gateway

import (
	"context"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

// Names of the add-on.
const (
	// ControllerName is the GatewayClass controllerName the add-on serves.
	ControllerName = "svcsim.dev/gateway-nginx"
	// ClassName is the GatewayClass Manifests create.
	ClassName = "svcsim"
	// Image is the controller Deployment's image.
	Image = "svcsim/gateway-nginx:v1"
	// Namespace holds the controller and the provisioned Services.
	Namespace = "svcsim-gateway-system"
	// PodLabel selects the controller pod.
	PodLabel = "svcsim-gateway"
	// StatusPort is nginx's status server on 127.0.0.1 in the pod.
	StatusPort = 10247
	// PodPortBase is the first pod port given to a Gateway listener port.
	PodPortBase = 20000
)

// Manifests are the add-on's objects: its namespace, the GatewayClass and
// the controller's Deployment. A cluster applies them when it wants
// Gateways served (the Gateway scenarios do; the conformance suite expects
// the class to exist).
const Manifests = `apiVersion: v1
kind: Namespace
metadata:
  name: ` + Namespace + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: ` + ClassName + `
spec:
  controllerName: ` + ControllerName + `
  description: svcsim's Gateway API controller on nginx
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svcsim-gateway
  namespace: ` + Namespace + `
  labels:
    app: ` + PodLabel + `
spec:
  replicas: 1
  selector:
    matchLabels:
      app: ` + PodLabel + `
  template:
    metadata:
      labels:
        app: ` + PodLabel + `
    spec:
      containers:
        - name: controller
          image: ` + Image + `
`

// Workload is the controller as a pod's workload.
var Workload = addons.Workload{
	Name:  "gateway-nginx",
	Ports: func(sim.Pod, sim.Container) []topology.Port { return nil },
	Start: func(ctx context.Context, env addons.Env) (addons.Instance, error) {
		return Start(ctx, env)
	},
}

// AddOn registers the controller's and the echo backend's images; it
// applies no objects (Manifests are applied by whoever wants Gateways).
func AddOn() addons.AddOn {
	ws := map[string]addons.Workload{addons.Repository(Image): Workload}
	for _, img := range EchoImages {
		ws[img] = Echo
	}
	return addons.AddOn{Name: "gateway", Workloads: ws}
}
