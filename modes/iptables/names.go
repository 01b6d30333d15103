package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/svcsim/svcsim/sim/state"
)

// Chain name prefixes, as kube-proxy names them. A name is the prefix plus 16
// base32 characters of a SHA-256, because iptables limits chain names to 28
// characters.
const (
	svcPrefix = "KUBE-SVC-"
	svlPrefix = "KUBE-SVL-"
	extPrefix = "KUBE-EXT-"
	fwPrefix  = "KUBE-FW-"
	sepPrefix = "KUBE-SEP-"
)

// portProtoHash is kube-proxy's hash of a service port: SHA-256 of
// "ns/name:port" + lower-case protocol, base32, first 16 characters.
func portProtoHash(id string, proto state.Protocol) string {
	h := sha256.Sum256([]byte(id + strings.ToLower(string(proto))))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

// ServiceChain is the KUBE-SVC chain of a service port.
func ServiceChain(s *state.ServicePort) string {
	return svcPrefix + portProtoHash(s.ID(), s.Protocol)
}

// LocalChain is the KUBE-SVL chain of a service port: its endpoints on this
// node, for a Local traffic policy.
func LocalChain(s *state.ServicePort) string {
	return svlPrefix + portProtoHash(s.ID(), s.Protocol)
}

// FirewallChain is the KUBE-FW chain of a service port: the
// loadBalancerSourceRanges check of its load-balancer IPs.
func FirewallChain(s *state.ServicePort) string {
	return fwPrefix + portProtoHash(s.ID(), s.Protocol)
}

// ExternalChain is the KUBE-EXT chain of a service port (NodePort and
// external IP traffic).
func ExternalChain(s *state.ServicePort) string {
	return extPrefix + portProtoHash(s.ID(), s.Protocol)
}

// EndpointChain is the KUBE-SEP chain of one endpoint ("ip:port") of a
// service port.
func EndpointChain(s *state.ServicePort, ep state.Endpoint) string {
	h := sha256.Sum256([]byte(s.ID() + strings.ToLower(string(s.Protocol)) + ep.String()))
	return sepPrefix + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// isServiceChain reports whether a chain is one of the per-service chains
// kube-proxy creates and deletes (SVC, SVL, EXT, FW, SEP).
func isServiceChain(name string) bool {
	for _, p := range []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
