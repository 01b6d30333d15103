package state

// Endpoint selection by traffic policy, one function for every datapath, as
// kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go) decides it:
//
//   - The cluster set is every ready endpoint; when none is ready anywhere,
//     the serving, terminating ones (KEP-1669: a rolling update that has
//     replaced every pod keeps answering until the old pods are gone).
//   - The local set is the ready endpoints on this node; when this node has
//     none, its serving, terminating ones. It falls back per node, so one
//     node may use terminating endpoints while another has ready ones.
//   - Internal traffic (from pods and the node to the ClusterIP) uses the
//     local set under internalTrafficPolicy Local, else the cluster set;
//     external traffic (NodePort, external IPs, load-balancer IPs) the local
//     set under externalTrafficPolicy Local, else the cluster set.
//
// Not-ready endpoints that are not terminating never receive traffic.

// IsLocal reports whether the endpoint runs on node.
func (e Endpoint) IsLocal(node string) bool { return node != "" && e.Node == node }

// servingTerminating reports whether a not-ready endpoint may still take
// traffic as a last resort.
func (e Endpoint) servingTerminating() bool { return e.Serving && e.Terminating }

// ClusterEndpoints are the endpoints cluster-wide traffic goes to.
func (s *ServicePort) ClusterEndpoints() []Endpoint {
	if len(s.Endpoints) > 0 {
		return s.Endpoints
	}
	var out []Endpoint
	for _, e := range s.NotReadyEndpoints {
		if e.servingTerminating() {
			out = append(out, e)
		}
	}
	return out
}

// LocalEndpoints are the endpoints node-local traffic goes to on node.
func (s *ServicePort) LocalEndpoints(node string) []Endpoint {
	var out []Endpoint
	for _, e := range s.Endpoints {
		if e.IsLocal(node) {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, e := range s.NotReadyEndpoints {
		if e.IsLocal(node) && e.servingTerminating() {
			out = append(out, e)
		}
	}
	return out
}

// LocalReadyEndpoints counts the ready endpoints on node: what the health
// check node port reports (kube-proxy's LocalReadyEndpoints; terminating
// endpoints do not count, so a node left with only those answers 503 and
// load balancers move new connections elsewhere).
func (s *ServicePort) LocalReadyEndpoints(node string) int {
	n := 0
	for _, e := range s.Endpoints {
		if e.IsLocal(node) {
			n++
		}
	}
	return n
}

// HasEndpoints reports whether any endpoint anywhere can take traffic
// (ready, or serving and terminating). Without one a datapath rejects
// connections; with one but none for the traffic's policy, it drops them.
func (s *ServicePort) HasEndpoints() bool { return len(s.ClusterEndpoints()) > 0 }

// InternalLocal reports internalTrafficPolicy Local.
func (s *ServicePort) InternalLocal() bool { return s.InternalTrafficPolicy == PolicyLocal }

// ExternalLocal reports externalTrafficPolicy Local on an externally
// reachable port.
func (s *ServicePort) ExternalLocal() bool {
	return s.ExternalTrafficPolicy == PolicyLocal && s.External()
}

// External reports whether the port is reachable from outside the cluster:
// a NodePort, an external IP or a load-balancer IP.
func (s *ServicePort) External() bool {
	return s.NodePort != 0 || len(s.ExternalIPs) > 0 || len(s.LoadBalancerIPs) > 0
}

// InternalEndpoints are the endpoints of traffic to the ClusterIP on node.
func (s *ServicePort) InternalEndpoints(node string) []Endpoint {
	if s.InternalLocal() {
		return s.LocalEndpoints(node)
	}
	return s.ClusterEndpoints()
}

// ExternalEndpoints are the endpoints of traffic from outside to a
// NodePort, external IP or load-balancer IP of node.
func (s *ServicePort) ExternalEndpoints(node string) []Endpoint {
	if s.ExternalLocal() {
		return s.LocalEndpoints(node)
	}
	return s.ClusterEndpoints()
}
