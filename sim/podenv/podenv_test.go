package podenv

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServiceVars(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "my-svc"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20",
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}}}}
	got := map[string]string{}
	for _, v := range ServiceVars(svc) {
		got[v.Name] = v.Value
	}
	want := map[string]string{
		"MY_SVC_SERVICE_HOST": "10.96.0.20", "MY_SVC_SERVICE_PORT": "80",
		"MY_SVC_SERVICE_PORT_HTTP": "80", "MY_SVC_SERVICE_PORT_DNS_UDP": "53",
		"MY_SVC_PORT":        "tcp://10.96.0.20:80",
		"MY_SVC_PORT_80_TCP": "tcp://10.96.0.20:80", "MY_SVC_PORT_80_TCP_PROTO": "tcp", "MY_SVC_PORT_80_TCP_PORT": "80", "MY_SVC_PORT_80_TCP_ADDR": "10.96.0.20",
		"MY_SVC_PORT_53_UDP": "udp://10.96.0.20:53", "MY_SVC_PORT_53_UDP_PROTO": "udp", "MY_SVC_PORT_53_UDP_PORT": "53", "MY_SVC_PORT_53_UDP_ADDR": "10.96.0.20",
	}
	if len(got) != len(want) {
		t.Errorf("got %d variables, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, ip := range []string{"", corev1.ClusterIPNone} {
		svc.Spec.ClusterIP = ip
		if vars := ServiceVars(svc); vars != nil {
			t.Errorf("ClusterIP %q: got %v, want none", ip, vars)
		}
	}
}
