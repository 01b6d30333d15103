// Package state holds the desired state that the control plane (package sim)
// hands to each node's proxy: the Service ports a node must implement and their
// endpoints. It has no dependency on Kubernetes types so that the proxy modes,
// which only consume it, build fast and can be driven by other programs: the
// JSON encoding of NodeState is the wire format of the node proxy feed.
//
// Values are treated as immutable once built: producers build a fresh NodeState
// for every change and consumers never modify one they were given.
package state

import (
	"fmt"
	"net/netip"
	"sort"
)

// Protocol is a transport protocol of a Service port.
type Protocol string

// The protocols svcsim implements.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// Version is the wire-format version of NodeState this package writes and
// reads. Version 1 had no version field (it decodes as 0); version 2 added
// the field itself, endpoint conditions, zones, traffic policies and the
// load-balancer fields. A proxy refuses a state newer than it knows.
const Version = 2

// TrafficPolicy is a Service's externalTrafficPolicy or
// internalTrafficPolicy as kube-proxy applies it.
type TrafficPolicy string

// The traffic policies.
const (
	// PolicyCluster routes to every endpoint of the cluster.
	PolicyCluster TrafficPolicy = "Cluster"
	// PolicyLocal routes only to endpoints on the receiving node.
	PolicyLocal TrafficPolicy = "Local"
)

// DefaultAffinityTimeout is the API server's default for
// spec.sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
const DefaultAffinityTimeout = 10800

// NodeState is everything one node's proxy needs to program its kernel.
type NodeState struct {
	// Version is the wire-format version (Version when built by this
	// package's producers; 0 from producers that predate the field).
	Version int `json:"version,omitempty"`
	// Node is the node's name (e.g. "node1").
	Node string `json:"node"`
	// Zone is the node's topology.kubernetes.io/zone label, if any.
	Zone string `json:"zone,omitempty"`
	// Generation increases with every change of the cluster; a proxy can use
	// it to report which state it has programmed.
	Generation uint64 `json:"generation"`
	// NodeIPs are this node's own addresses; NodePorts are served on each.
	NodeIPs []netip.Addr `json:"nodeIPs"`
	// PodCIDR is the range of this node's pods (its cni0 bridge network).
	PodCIDR netip.Prefix `json:"podCIDR"`
	// ClusterCIDR covers every pod of the cluster (kube-proxy's --cluster-cidr):
	// traffic to a Service from outside it is masqueraded.
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	// ServiceCIDR is the range ClusterIPs are allocated from.
	ServiceCIDR netip.Prefix `json:"serviceCIDR"`
	// Services lists every non-headless Service port, sorted by ID.
	Services []ServicePort `json:"services"`
}

// ServicePort is one port of one Service, the unit kube-proxy programs
// (kube-proxy's ServicePortName plus its ServicePort info).
type ServicePort struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	PortName  string   `json:"portName,omitempty"`
	Protocol  Protocol `json:"protocol"`
	// ClusterIP is the Service's virtual IP. Headless Services are not
	// included in NodeState at all.
	ClusterIP netip.Addr `json:"clusterIP"`
	Port      int32      `json:"port"`
	// NodePort is 0 unless the Service is of type NodePort or LoadBalancer.
	NodePort int32 `json:"nodePort,omitempty"`
	// ExternalIPs are extra VIPs (spec.externalIPs) served like the ClusterIP.
	ExternalIPs []netip.Addr `json:"externalIPs,omitempty"`
	// SessionAffinity is true for sessionAffinity: ClientIP.
	SessionAffinity bool `json:"sessionAffinity,omitempty"`
	// AffinityTimeout is timeoutSeconds of ClientIP affinity (seconds).
	AffinityTimeout int32 `json:"affinityTimeout,omitempty"`
	// Scheduler is an optional load-balancing hint for modes that have one
	// (IPVS: "rr", "wrr", "lc", "sh", ...). Empty means the mode's default.
	Scheduler string `json:"scheduler,omitempty"`
	// Type is the Service's spec.type (ClusterIP, NodePort, LoadBalancer).
	Type string `json:"type,omitempty"`
	// ExternalTrafficPolicy is Local only for a Service reachable from
	// outside (NodePort, LoadBalancer or externalIPs) whose
	// externalTrafficPolicy is Local; otherwise Cluster (or empty from
	// version 1 producers).
	ExternalTrafficPolicy TrafficPolicy `json:"externalTrafficPolicy,omitempty"`
	// InternalTrafficPolicy is the Service's internalTrafficPolicy.
	InternalTrafficPolicy TrafficPolicy `json:"internalTrafficPolicy,omitempty"`
	// LoadBalancerIPs are the IPv4 addresses of status.loadBalancer.ingress
	// that the proxy serves (ipMode VIP or unset), sorted.
	LoadBalancerIPs []netip.Addr `json:"loadBalancerIPs,omitempty"`
	// LoadBalancerSourceRanges are spec.loadBalancerSourceRanges (IPv4).
	LoadBalancerSourceRanges []netip.Prefix `json:"loadBalancerSourceRanges,omitempty"`
	// HealthCheckNodePort is set for a LoadBalancer Service with
	// externalTrafficPolicy Local: the port the proxy answers health
	// checks on.
	HealthCheckNodePort int32 `json:"healthCheckNodePort,omitempty"`
	// Endpoints are the ready backends, sorted by address then port. Every
	// mode sends traffic to these.
	Endpoints []Endpoint `json:"endpoints"`
	// NotReadyEndpoints are the backends that are not ready (among them
	// serving, terminating ones kube-proxy may fall back to), sorted the
	// same way. No mode uses them yet.
	NotReadyEndpoints []Endpoint `json:"notReadyEndpoints,omitempty"`
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	IP   netip.Addr `json:"ip"`
	Port int32      `json:"port"`
	// Node is the node the backend runs on; empty for addresses outside
	// the cluster (Endpoints of a Service without a selector).
	Node string `json:"node,omitempty"`
	// Pod is the backing pod's name, when there is one.
	Pod string `json:"pod,omitempty"`
	// Zone is the endpoint's zone (its node's topology zone), if known.
	Zone string `json:"zone,omitempty"`
	// Ready, Serving and Terminating are the endpoint's conditions as
	// kube-proxy reads them from its EndpointSlice (version 2; version 1
	// producers leave them false).
	Ready       bool `json:"ready,omitempty"`
	Serving     bool `json:"serving,omitempty"`
	Terminating bool `json:"terminating,omitempty"`
}

// ID names the Service port like kube-proxy does: "ns/name:port" or "ns/name"
// when the port has no name.
func (s *ServicePort) ID() string {
	if s.PortName == "" {
		return s.Namespace + "/" + s.Name
	}
	return s.Namespace + "/" + s.Name + ":" + s.PortName
}

// Key is ID plus protocol, unique within a NodeState ("ns/name:port/TCP").
func (s *ServicePort) Key() string { return s.ID() + "/" + string(s.Protocol) }

// PortKey is Key as a comparable value: a map key that costs no string
// building (a datapath compares every service port on every sync).
type PortKey struct {
	Namespace, Name, PortName string
	Protocol                  Protocol
}

// PortKey returns s's PortKey; two service ports have the same PortKey
// exactly when they have the same Key.
func (s *ServicePort) PortKey() PortKey {
	return PortKey{Namespace: s.Namespace, Name: s.Name, PortName: s.PortName, Protocol: s.Protocol}
}

// Timeout returns the affinity timeout in seconds, defaulted.
func (s *ServicePort) Timeout() int32 {
	if s.AffinityTimeout <= 0 {
		return DefaultAffinityTimeout
	}
	return s.AffinityTimeout
}

// String renders an endpoint as "ip:port".
func (e Endpoint) String() string {
	return netip.AddrPortFrom(e.IP, uint16(e.Port)).String()
}

// Sort puts Services and their endpoints into canonical order so that two
// equal states encode to the same bytes.
func (n *NodeState) Sort() {
	sort.Slice(n.Services, func(i, j int) bool { return n.Services[i].Key() < n.Services[j].Key() })
	for i := range n.Services {
		sortEndpoints(n.Services[i].Endpoints)
		sortEndpoints(n.Services[i].NotReadyEndpoints)
	}
}

func sortEndpoints(eps []Endpoint) {
	sort.Slice(eps, func(a, b int) bool {
		if c := eps[a].IP.Compare(eps[b].IP); c != 0 {
			return c < 0
		}
		return eps[a].Port < eps[b].Port
	})
}

// Validate checks the invariants modes rely on.
func (n *NodeState) Validate() error {
	if err := n.ValidateVersion(); err != nil {
		return err
	}
	seen := make(map[PortKey]bool, len(n.Services))
	for i := range n.Services {
		s := &n.Services[i]
		if seen[s.PortKey()] {
			return fmt.Errorf("service port %s listed twice", s.Key())
		}
		seen[s.PortKey()] = true
		if err := s.Validate(n.Version); err != nil {
			return err
		}
	}
	return nil
}

// ValidateVersion checks the part of Validate that is not per service port.
func (n *NodeState) ValidateVersion() error {
	if n.Version > Version {
		return fmt.Errorf("node state version %d is newer than this proxy understands (%d)", n.Version, Version)
	}
	return nil
}

// Validate checks one service port of a state of the given version (every
// check of NodeState.Validate but the duplicates): a datapath that compares
// each port with the one it synced last checks only the changed ones.
func (s *ServicePort) Validate(version int) error {
	// Names reach rule comments, chain-name hashes and dumps: the feed
	// accepts only what the API server accepts, so a hostile feed cannot
	// smuggle a quote or a newline into an iptables-restore script.
	if !isDNSLabel(s.Namespace) || !isDNSLabel(s.Name) || (s.PortName != "" && !isDNSLabel(s.PortName)) {
		return fmt.Errorf("service port %q: namespace, name and port name must be DNS labels (lower-case letters, digits and '-', at most 63)", s.Key())
	}
	if !s.ClusterIP.Is4() {
		return fmt.Errorf("service port %s: clusterIP %v is not IPv4", s.Key(), s.ClusterIP)
	}
	if s.Protocol != TCP && s.Protocol != UDP {
		return fmt.Errorf("service port %s: unsupported protocol %q", s.Key(), s.Protocol)
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("service port %s: port %d out of range", s.Key(), s.Port)
	}
	for _, e := range s.Endpoints {
		if !e.IP.Is4() || e.Port < 1 || e.Port > 65535 {
			return fmt.Errorf("service port %s: bad endpoint %v:%d", s.Key(), e.IP, e.Port)
		}
		if version >= 2 && !e.Ready {
			return fmt.Errorf("service port %s: endpoint %v listed as ready is not", s.Key(), e)
		}
	}
	for _, e := range s.NotReadyEndpoints {
		if !e.IP.Is4() || e.Port < 1 || e.Port > 65535 || e.Ready {
			return fmt.Errorf("service port %s: bad not-ready endpoint %v:%d", s.Key(), e.IP, e.Port)
		}
	}
	return nil
}

// isDNSLabel reports whether v is an RFC 1123 label, as the API server
// demands of namespaces, Service names and port names.
func isDNSLabel(v string) bool {
	if v == "" || len(v) > 63 || v[0] == '-' || v[len(v)-1] == '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Service returns the ServicePort with the given Key, or nil.
func (n *NodeState) Service(key string) *ServicePort {
	for i := range n.Services {
		if n.Services[i].Key() == key {
			return &n.Services[i]
		}
	}
	return nil
}
