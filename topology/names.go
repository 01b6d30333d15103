package topology

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"regexp"
	"strings"
)

// Namespace names are "<run id>-<role>": "svs1a2b3c-node1",
// "svs1a2b3c-underlay", "svs1a2b3c-external", "svs1a2b3c-pod-default_web-0",
// "svs1a2b3c-host-db". GC finds a run's namespaces by that prefix alone.

const maxNSName = 63 // keep names short enough for any tool that prints them

// Role names of the fixed namespaces.
const (
	RoleUnderlay = "underlay"
	RoleExternal = "external"
	// RoleControlPlane is the namespace of Spec.ControlPlaneIP.
	RoleControlPlane = "control-plane"
	// RoleCloudLB is the namespace of Spec.LoadBalancerIP: the simulated
	// cloud load balancer.
	RoleCloudLB = "cloud-lb"
)

// NSName is the namespace name of role in run runID.
func NSName(runID, role string) string { return fitName(runID+"-", sanitize(role), role) }

// NodeNSName is the namespace of node.
func NodeNSName(runID, node string) string { return NSName(runID, node) }

// PodNSName is the namespace of a pod ("ns/name").
func PodNSName(runID, pod string) string { return fitName(runID+"-pod-", sanitize(pod), pod) }

// HostNSName is the namespace of an extra underlay host.
func HostNSName(runID, host string) string { return fitName(runID+"-host-", sanitize(host), host) }

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// sanitize makes s usable as a file name under /run/netns: '/' (the pod's
// namespace separator) becomes '_', anything else unusual becomes '-'.
func sanitize(s string) string {
	s = strings.ReplaceAll(s, "/", "_")
	return unsafeChars.ReplaceAllString(s, "-")
}

// fitName joins prefix and the sanitized name; when sanitizing changed the
// name in a way that could collide, or the result is too long, it is
// truncated and suffixed with a hash of the original name.
func fitName(prefix, clean, orig string) string {
	lossless := clean == strings.ReplaceAll(orig, "/", "_") && !strings.Contains(orig, "_")
	if lossless && len(prefix)+len(clean) <= maxNSName {
		return prefix + clean
	}
	h := shortHash(orig)
	room := maxNSName - len(prefix) - len(h) - 1
	if len(clean) > room {
		clean = clean[:room]
	}
	return prefix + clean + "-" + h
}

// shortHash is 8 hex digits of sha256(s).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// hostVethName is the node-side veth of a pod: "veth" + 8 hex digits (Linux
// limits interface names to 15 bytes).
func hostVethName(pod string) string { return "veth" + shortHash(pod) }

// underlayVethName is the underlay-side veth of a node or host.
func underlayVethName(kind, name string) string {
	n := kind + "-" + name
	if len(n) <= 15 && !unsafeChars.MatchString(n) {
		return n
	}
	return kind + shortHash(name)
}

// StableMAC derives a locally administered unicast MAC from key, so a pod
// keeps its MAC across runs (the seed's getip reports it).
func StableMAC(key string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("svcsim-mac/" + key))
	mac := net.HardwareAddr(append([]byte(nil), sum[:6]...))
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
