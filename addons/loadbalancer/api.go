// Package loadbalancer is svcsim's LoadBalancer: a simulated cloud load
// balancer (Cloud) in its own namespace on the underlay, and an add-on
// controller that runs in a pod, as a cloud controller manager's service
// controller does, on either control plane: it watches Services of type
// LoadBalancer (without a loadBalancerClass) and Nodes through the
// cluster's client-go interface, asks the cloud's API for a load balancer
// per Service and writes the address it gets into
// status.loadBalancer.ingress (ipMode VIP), so `svcsim get svc` shows it as
// EXTERNAL-IP.
//
// The cloud API (HTTP+JSON on CloudIP:APIPort, reachable from pods and the
// underlay):
//
//	PUT    /v1/loadbalancers/{namespace}/{name}  body Spec -> 200 Status (the address is kept across PUTs)
//	DELETE /v1/loadbalancers/{namespace}/{name}  -> 204, address and route released
//	GET    /v1/loadbalancers                     -> 200 []Status, with each node's health
//
// The cloud health-checks every node of a load balancer (HealthCheck: the
// Service's healthCheckNodePort under externalTrafficPolicy Local, the
// proxy's :10256/healthz otherwise) and routes the address to the nodes
// that answer 200.
package loadbalancer

import "net/netip"

// APIPort is the cloud API's port.
const APIPort = 8080

// Spec is one load balancer as the controller asks for it.
type Spec struct {
	// Ports are the Service's ports (its listeners).
	Ports []Port `json:"ports"`
	// Nodes are the backends' addresses (the nodes' InternalIPs).
	Nodes []netip.Addr `json:"nodes"`
	// HealthCheck is what the cloud probes on each node.
	HealthCheck HealthCheck `json:"healthCheck"`
}

// Port is a listener.
type Port struct {
	Protocol string `json:"protocol"`
	Port     int32  `json:"port"`
}

// HealthCheck is an HTTP GET of Path on Port of every node; 200 is healthy.
type HealthCheck struct {
	Port int32  `json:"port"`
	Path string `json:"path"`
}

// Status is a load balancer as the cloud holds it.
type Status struct {
	// Name is "namespace/name".
	Name  string       `json:"name"`
	IP    netip.Addr   `json:"ip"`
	Spec  Spec         `json:"spec"`
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one node's health in one load balancer.
type NodeStatus struct {
	IP      netip.Addr `json:"ip"`
	Healthy bool       `json:"healthy"`
	// Last is the last probe's outcome ("200", "503", an error).
	Last string `json:"last"`
}
