// Package modetest is what the datapaths' tests share: the address plan of
// a test node and a NodeState on it, so that every mode's tests speak of the
// same node; and, for the root tests, namespaces to send real traffic
// through a node's rules (Rig, Link) with a server that answers with the
// address it sees (ServeRemoteAddr, AskRemoteAddr).
//
//	node      node1, 198.18.0.11 (svcsim's default underlay)
//	pods      10.244.1.0/24 on node1, cluster CIDR 10.244.0.0/16
//	services  10.96.0.0/12
package modetest

import (
	"net/netip"

	"github.com/svcsim/svcsim/sim/state"
)

// The address plan.
const (
	Node        = "node1"
	NodeIP      = "198.18.0.11"
	PodCIDR     = "10.244.1.0/24"
	ClusterCIDR = "10.244.0.0/16"
	ServiceCIDR = "10.96.0.0/12"
)

// NodeState is node1's state with the given service ports, sorted as the
// control plane sends it.
func NodeState(svcs ...state.ServicePort) *state.NodeState {
	st := &state.NodeState{
		Node:        Node,
		NodeIPs:     []netip.Addr{netip.MustParseAddr(NodeIP)},
		PodCIDR:     netip.MustParsePrefix(PodCIDR),
		ClusterCIDR: netip.MustParsePrefix(ClusterCIDR),
		ServiceCIDR: netip.MustParsePrefix(ServiceCIDR),
		Services:    svcs,
	}
	st.Sort()
	return st
}
