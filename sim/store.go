package sim

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// store is the whole cluster state. It is a plain value with exported
// fields so that it can be deep-copied (for all-or-nothing changes: every
// change runs on a copy which replaces the original only on success). Maps
// are keyed "namespace/name".
type store struct {
	Namespaces  map[string]*corev1.Namespace     `json:"namespaces"`
	Pods        map[string]*corev1.Pod           `json:"pods"`
	Deployments map[string]*appsv1.Deployment    `json:"deployments"`
	DaemonSets  map[string]*appsv1.DaemonSet     `json:"daemonSets"`
	Services    map[string]*corev1.Service       `json:"services"`
	Endpoints   map[string]*corev1.Endpoints     `json:"endpoints"`
	Ingresses   map[string]*networkingv1.Ingress `json:"ingresses"`
	// EndpointSlices holds the controllers' slices and the users'.
	EndpointSlices map[string]*discoveryv1.EndpointSlice `json:"endpointSlices"`
	// Stored holds the stored kinds' objects (see storedKinds).
	Stored storedObjects `json:"stored,omitempty"`
	// NodeLabels holds each node's current labels.
	NodeLabels map[string]map[string]string `json:"nodeLabels"`
	// NodeLost holds the nodes marked lost (SetNodeReady false) with when.
	NodeLost map[string]metav1.Time `json:"nodeLost,omitempty"`
	// Owner maps a pod key to its controlling workload, "deployment/ns/name"
	// or "daemonset/ns/name".
	Owner map[string]string `json:"owner"`
	// Seq records the order objects were created in ("kind/ns/name"); the
	// kubelet only gives a pod environment variables of Services that
	// existed when it started, and scale-down removes the newest pods.
	Seq     map[string]uint64 `json:"seq"`
	NextSeq uint64            `json:"nextSeq"`
	// LastIP is each node's most recently allocated pod IP: like the CNI
	// host-local IPAM, allocation continues after it, so a freed address
	// is not handed out again at once.
	LastIP map[string]string `json:"lastIP"`
	// RNG is the state of the deterministic random source.
	RNG uint64 `json:"rng"`
	// SliceRNG draws EndpointSlice name suffixes (a sequence of its own,
	// so that slices leave every other random choice as it was).
	SliceRNG   uint64 `json:"sliceRNG"`
	Generation uint64 `json:"generation"`
	// ResourceVersion counts object writes (metadata.resourceVersion).
	ResourceVersion uint64 `json:"resourceVersion"`
}

func newStore(seed int64) *store {
	return &store{
		Namespaces:     map[string]*corev1.Namespace{},
		Pods:           map[string]*corev1.Pod{},
		Deployments:    map[string]*appsv1.Deployment{},
		DaemonSets:     map[string]*appsv1.DaemonSet{},
		Services:       map[string]*corev1.Service{},
		Endpoints:      map[string]*corev1.Endpoints{},
		Ingresses:      map[string]*networkingv1.Ingress{},
		EndpointSlices: map[string]*discoveryv1.EndpointSlice{},
		NodeLabels:     map[string]map[string]string{},
		Owner:          map[string]string{},
		Seq:            map[string]uint64{},
		LastIP:         map[string]string{},
		RNG:            uint64(seed),
		SliceRNG:       uint64(seed) ^ sliceRNGSalt,
	}
}

// clone returns a deep copy.
func (s *store) clone() *store {
	c := *s
	c.Namespaces = cloneMap(s.Namespaces, (*corev1.Namespace).DeepCopy)
	c.Pods = cloneMap(s.Pods, (*corev1.Pod).DeepCopy)
	c.Deployments = cloneMap(s.Deployments, (*appsv1.Deployment).DeepCopy)
	c.DaemonSets = cloneMap(s.DaemonSets, (*appsv1.DaemonSet).DeepCopy)
	c.Services = cloneMap(s.Services, (*corev1.Service).DeepCopy)
	c.Endpoints = cloneMap(s.Endpoints, (*corev1.Endpoints).DeepCopy)
	c.Ingresses = cloneMap(s.Ingresses, (*networkingv1.Ingress).DeepCopy)
	c.EndpointSlices = cloneMap(s.EndpointSlices, (*discoveryv1.EndpointSlice).DeepCopy)
	c.Stored = s.Stored.clone()
	c.NodeLabels = make(map[string]map[string]string, len(s.NodeLabels))
	for k, v := range s.NodeLabels {
		c.NodeLabels[k] = copyLabels(v)
	}
	if s.NodeLost != nil {
		c.NodeLost = make(map[string]metav1.Time, len(s.NodeLost))
		for k, v := range s.NodeLost {
			c.NodeLost[k] = v
		}
	}
	c.Owner = copyLabels(s.Owner)
	c.Seq = make(map[string]uint64, len(s.Seq))
	for k, v := range s.Seq {
		c.Seq[k] = v
	}
	c.LastIP = copyLabels(s.LastIP)
	return &c
}

func cloneMap[T any](m map[string]*T, cp func(*T) *T) map[string]*T {
	out := make(map[string]*T, len(m))
	for k, v := range m {
		out[k] = cp(v)
	}
	return out
}

func copyLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func key(namespace, name string) string { return namespace + "/" + name }

// rand returns the next value of a splitmix64 sequence. Keeping the state in
// the store makes every allocation reproducible from Config.Seed and lets a
// rejected change leave the sequence untouched.
func (s *store) rand() uint64 {
	s.RNG += 0x9e3779b97f4a7c15
	z := s.RNG
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// sliceRNGSalt separates the slice name sequence from the main one.
const sliceRNGSalt = 0x736c696365730a

// sliceRand is rand's splitmix64 step on SliceRNG.
func (s *store) sliceRand() uint64 {
	s.SliceRNG += 0x9e3779b97f4a7c15
	z := s.SliceRNG
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (s *store) intn(n int) int { return int(s.rand() % uint64(n)) }

// nameAlphabet is the alphabet of generated name suffixes (the API server's
// utilrand: no vowels, no confusable characters).
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func (s *store) suffix(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameAlphabet[s.intn(len(nameAlphabet))]
	}
	return string(b)
}

func (s *store) uid() types.UID {
	a, b := s.rand(), s.rand()
	return types.UID(fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x",
		uint32(a>>32), uint16(a>>16), uint16(a)&0xfff, (uint16(b>>48)&0x3fff)|0x8000, b&0xffffffffffff))
}

func (s *store) nextSeq(k string) {
	s.NextSeq++
	s.Seq[k] = s.NextSeq
}

func (s *store) nextRV() string {
	s.ResourceVersion++
	return fmt.Sprint(s.ResourceVersion)
}
