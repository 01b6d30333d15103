package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/svcsim/svcsim/sim/state"
)

// A pod view carries its containers' images and ports, and the ports
// Services send it to (ready or not), so that what runs in it can be
// decided without building a node's state.
func TestPodContainersAndTargetPorts(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c,
		makePod("default", "web"),
		makeService("default", "web", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{
				{Name: "a", Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "b", Port: 81, TargetPort: intstr.FromInt32(9000)},
				{Name: "c", Port: 82, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolUDP},
			}
		}),
		makePod("default", "other", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "other"} }),
	)
	pods := map[string]Pod{}
	for _, p := range c.Pods() {
		pods[p.Name] = p
	}
	web := pods["web"]
	require.Equal(t, []Container{{Name: "app", Image: "getip:v1", Ports: []ContainerPort{{Name: "http", Port: 8080, Protocol: state.TCP}}}}, web.Containers)
	want := []ContainerPort{{Port: 8080, Protocol: state.TCP}, {Port: 9000, Protocol: state.TCP}, {Port: 9000, Protocol: state.UDP}}
	require.Equal(t, want, web.TargetPorts)
	require.Empty(t, pods["other"].TargetPorts, "no Service selects it")

	require.NoError(t, c.SetPodReady("default", "web", false))
	for _, p := range c.Pods() {
		if p.Name == "web" {
			require.Equal(t, want, p.TargetPorts, "a pod that is not ready is still sent to once ready")
		}
	}
}

// A user-written EndpointSlice that names a pod sends it traffic too.
func TestPodTargetPortsFromUserSlices(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makePod("default", "db"))
	var ip string
	for _, p := range c.Pods() {
		ip = p.IP.String()
	}
	port, proto := int32(7000), corev1.ProtocolUDP
	mustApply(t, c,
		makeService("default", "ext", func(s *corev1.Service) { s.Spec.Selector = nil }),
		&discoveryv1.EndpointSlice{
			TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "ext-1", Labels: map[string]string{discoveryv1.LabelServiceName: "ext"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "db"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: &port, Protocol: &proto}},
		})
	require.Equal(t, []ContainerPort{{Port: 7000, Protocol: state.UDP}}, c.Pods()[0].TargetPorts)
}
