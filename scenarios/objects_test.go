package scenarios

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// portsPod is pod name on node labelled app: app, serving HTTP on each TCP
// port given.
func portsPod(name, node, app string, ports ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels:\n    app: %s\nspec:\n  nodeName: %s\n  containers:\n    - name: server\n      image: echo\n      ports:\n", name, app, node)
	for _, p := range ports {
		fmt.Fprintf(&b, "        - containerPort: %d\n", p)
	}
	return b.String()
}

// selectorless is a Service without a selector with TCP ports name:number.
func selectorless(name string, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  ports:\n", name)
	for _, p := range ports {
		n, num, _ := strings.Cut(p, ":")
		fmt.Fprintf(&b, "    - name: %s\n      protocol: TCP\n      port: %s\n", n, num)
	}
	return b.String()
}

// userSlice is an EndpointSlice of Service svc written by a user (not a
// controller): addresses on port name:number.
func userSlice(name, svc, port string, ips ...string) string {
	n, num, _ := strings.Cut(port, ":")
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  labels:
    kubernetes.io/service-name: %s
    endpointslice.kubernetes.io/managed-by: svcsim-scenario
addressType: IPv4
ports:
  - name: %s
    protocol: TCP
    port: %s
endpoints:
`, name, svc, n, num)
	for _, ip := range ips {
		fmt.Fprintf(&b, "  - addresses: [%q]\n    conditions:\n      ready: true\n", ip)
	}
	return b.String()
}

// endpointsOf returns Endpoints ns/name (nil when there is none).
func endpointsOf(h *harness.H, name string) *corev1.Endpoints {
	h.T.Helper()
	objs, err := h.P.List(h.Ctx, "endpoints", h.NS, "")
	if err != nil {
		h.Fatalf("list endpoints: %v", err)
	}
	for _, o := range objs {
		if e := o.(*corev1.Endpoints); e.Name == name {
			return e
		}
	}
	return nil
}

// slicesOf returns the EndpointSlices of Service name.
func slicesOf(h *harness.H, name string) []*discoveryv1.EndpointSlice {
	h.T.Helper()
	objs, err := h.P.List(h.Ctx, "endpointslices", h.NS, "kubernetes.io/service-name="+name)
	if err != nil {
		h.Fatalf("list endpointslices: %v", err)
	}
	var out []*discoveryv1.EndpointSlice
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// eventually polls cond every 200 ms for at most 10 s: the controllers
// write Endpoints and slices after the change that causes them.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// endpointIPs are the ready addresses of Endpoints e, sorted, with its ports.
func endpointIPs(e *corev1.Endpoints) (ips []string, ports []int32) {
	if e == nil {
		return nil, nil
	}
	for _, s := range e.Subsets {
		for _, a := range s.Addresses {
			ips = append(ips, a.IP)
		}
		for _, p := range s.Ports {
			ports = append(ports, p.Port)
		}
	}
	sort.Strings(ips)
	return ips, ports
}

// sliceIPs are the ready addresses of slices, sorted, and who manages them.
func sliceIPs(slices []*discoveryv1.EndpointSlice) (ips []string, managers []string) {
	for _, s := range slices {
		managers = append(managers, s.Labels[discoveryv1.LabelManagedBy])
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	sort.Strings(ips)
	return ips, managers
}

// TestEndpointObjects: what the endpoint controllers write, and traffic
// through slices a user wrote. A Service whose selector matches no pod
// gets an empty Endpoints object and an empty EndpointSlice, both deleted
// with it; a Service over pods lists exactly their addresses in both;
// user-written EndpointSlices of a selectorless Service route each port to
// the addresses its slice names and spread over the addresses of slices
// sharing a port; a custom Endpoints object is mirrored into a slice
// through create, update and delete, also with two subsets of one address.
func TestEndpointObjects(t *testing.T) {
	sc := harness.Scenario{Name: "endpoint-objects", Title: "Endpoints and EndpointSlices: the controllers' objects and user-written slices", Group: results.GroupSelectorless}
	opts := harness.Options{Manifests: []string{getipApp(2, ""),
		portsPod("p1", "node1", "none", 80, 8090, 9090), portsPod("p2", "node2", "none", 80)}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		// A selector Service matching nothing.
		h.Apply(strings.Replace(webService("nobody", "ClusterIP", 80), "app: getip", "app: nobody", 1))
		ok := eventually(func() bool {
			e := endpointsOf(h, "nobody")
			ips, _ := sliceIPs(slicesOf(h, "nobody"))
			return e != nil && len(e.Subsets) == 0 && len(slicesOf(h, "nobody")) == 1 && len(ips) == 0
		})
		h.Check(ok, "no matching pod: an empty Endpoints object and one empty EndpointSlice", "endpoints exist: %v, slices %d", endpointsOf(h, "nobody") != nil, len(slicesOf(h, "nobody")))
		del(h, "service", "nobody")
		ok = eventually(func() bool { return endpointsOf(h, "nobody") == nil && len(slicesOf(h, "nobody")) == 0 })
		h.Check(ok, "deleted with the Service", "endpoints exist: %v, slices %d", endpointsOf(h, "nobody") != nil, len(slicesOf(h, "nobody")))

		var want []string
		for ip := range podIPs(h, h.NS, "getip-deployment-") {
			want = append(want, ip)
		}
		sort.Strings(want)
		ok = eventually(func() bool {
			eIPs, ePorts := endpointIPs(endpointsOf(h, "getip-service"))
			sIPs, _ := sliceIPs(slicesOf(h, "getip-service"))
			return fmt.Sprint(eIPs) == fmt.Sprint(want) && fmt.Sprint(ePorts) == "[80]" && fmt.Sprint(sIPs) == fmt.Sprint(want)
		})
		eIPs, _ := endpointIPs(endpointsOf(h, "getip-service"))
		sIPs, managers := sliceIPs(slicesOf(h, "getip-service"))
		h.Check(ok, "matching pods: Endpoints and EndpointSlices list exactly their addresses", "pods %v, endpoints %v, slices %v", want, eIPs, sIPs)
		h.Check(len(managers) > 0 && managers[0] == "endpointslice-controller.k8s.io", "the EndpointSlice controller manages them", "%v", managers)

		// User-written slices: port a only on p1, port b only on p2; then
		// one port over both in two slices.
		p1, p2 := pod(h, h.NS, "p1").IP.String(), pod(h, h.NS, "p2").IP.String()
		names := map[string]string{p1: "p1", p2: "p2"}
		h.Apply(selectorless("split", "a:80", "b:81"), userSlice("split-a", "split", "a:80", p1), userSlice("split-b", "split", "b:80", p2))
		c := client(h, h.NS, "client")
		vip := service(h, h.NS, "split").Spec.ClusterIP
		everyEndpoint(h, "slice split-a", c, "tcp", vip+":80", map[string]string{p1: "p1"}, 20)
		everyEndpoint(h, "slice split-b", c, "tcp", vip+":81", map[string]string{p2: "p2"}, 20)
		h.Apply(selectorless("spread", "a:80"), userSlice("spread-1", "spread", "a:80", p1), userSlice("spread-2", "spread", "a:80", p2))
		everyEndpoint(h, "one port in two slices", c, "tcp", service(h, h.NS, "spread").Spec.ClusterIP+":80", names, 30)

		// A custom Endpoints object, mirrored.
		mirrorEndpoints := func(ip string) string {
			return fmt.Sprintf("apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: mirror\nsubsets:\n  - addresses:\n      - ip: %s\n    ports:\n      - name: a\n        port: 80\n", ip)
		}
		mirrored := func(want ...string) func() bool {
			return func() bool {
				ips, managers := sliceIPs(slicesOf(h, "mirror"))
				return fmt.Sprint(ips) == fmt.Sprint(want) && (len(want) == 0 && len(managers) == 0 ||
					len(managers) > 0 && managers[0] == "endpointslicemirroring-controller.k8s.io")
			}
		}
		h.Apply(selectorless("mirror", "a:80"), mirrorEndpoints(p1))
		h.Check(eventually(mirrored(p1)), "custom Endpoints mirrored into a slice", "%s", describeSlices(slicesOf(h, "mirror")))
		mvip := service(h, h.NS, "mirror").Spec.ClusterIP + ":80"
		everyEndpoint(h, "mirrored", c, "tcp", mvip, map[string]string{p1: "p1"}, 10)
		h.Apply(mirrorEndpoints(p2))
		h.Check(eventually(mirrored(p2)), "an update is mirrored", "%s", describeSlices(slicesOf(h, "mirror")))
		everyEndpoint(h, "mirrored update", c, "tcp", mvip, map[string]string{p2: "p2"}, 10)
		del(h, "endpoints", "mirror")
		h.Check(eventually(mirrored()), "a deletion is mirrored", "%d slices left", len(slicesOf(h, "mirror")))
		quietNow, what := quiet(h, c, mvip)
		h.Check(quietNow, "no endpoints left: nothing answers", "%s", what)

		// Two subsets, one address, two ports.
		h.Apply(selectorless("twosub", "a:80", "b:81"), fmt.Sprintf(`apiVersion: v1
kind: Endpoints
metadata:
  name: twosub
subsets:
  - addresses:
      - ip: %[1]s
    ports:
      - name: a
        port: 8090
  - addresses:
      - ip: %[1]s
    ports:
      - name: b
        port: 9090
`, p1))
		h.Check(eventually(func() bool {
			d := describeSlices(slicesOf(h, "twosub"))
			return strings.Contains(d, p1+" a:8090") && strings.Contains(d, p1+" b:9090")
		}), "two subsets of one address mirrored", "%s", describeSlices(slicesOf(h, "twosub")))
		tvip := service(h, h.NS, "twosub").Spec.ClusterIP
		for _, port := range []string{"80", "81"} {
			body, err := c.Get(h.Ctx, "http://"+tvip+":"+port+"/name")
			h.Check(err == nil && body == h.NS+"/p1", "subset port "+port+" reaches p1", "%q %v", body, err)
		}
	})
}

// describeSlices lists each slice's addresses with its ports ("ip name:port").
func describeSlices(slices []*discoveryv1.EndpointSlice) string {
	var out []string
	for _, s := range slices {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				for _, p := range s.Ports {
					name, port := "", int32(0)
					if p.Name != nil {
						name = *p.Name
					}
					if p.Port != nil {
						port = *p.Port
					}
					out = append(out, fmt.Sprintf("%s %s:%d (%s)", a, name, port, s.Labels[discoveryv1.LabelManagedBy]))
				}
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// namedPortPod is pod name on node labelled app: named whose container
// port named http is number port.
func namedPortPod(name, node string, port int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels:\n    app: named\nspec:\n  nodeName: %s\n  containers:\n    - name: server\n      image: echo\n      ports:\n        - containerPort: %d\n          name: http\n", name, node, port)
}

// TestNamedTargetPorts: a Service's targetPort names a container port that
// has a different number on each pod (8080 on one, 8090 on the other, then
// 8090 replaced by 8070): each endpoint is reached on its own number.
func TestNamedTargetPorts(t *testing.T) {
	sc := harness.Scenario{Name: "named-target-ports", Title: "A named targetPort resolves to each pod's own number", Group: results.GroupMultiPort}
	const svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: named\nspec:\n  selector:\n    app: named\n  ports:\n    - protocol: TCP\n      port: 80\n      targetPort: http\n"
	opts := harness.Options{Manifests: []string{getipApp(1, ""), namedPortPod("n1", "node1", 8080), namedPortPod("n2", "node2", 8090), svc}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := service(h, h.NS, "named").Spec.ClusterIP + ":80"
		check := func(step string, want map[string]int32) {
			h.T.Helper()
			ips := map[string]string{}
			for name := range want {
				ips[pod(h, h.NS, name).IP.String()] = name
			}
			everyEndpoint(h, step, c, "tcp", vip, ips, 30)
			got := map[string]int32{}
			for _, s := range slicesOf(h, "named") {
				for _, e := range s.Endpoints {
					if len(s.Ports) == 1 && s.Ports[0].Port != nil && len(e.Addresses) > 0 {
						got[ips[e.Addresses[0]]] = *s.Ports[0].Port
					}
				}
			}
			h.Check(fmt.Sprint(got) == fmt.Sprint(want), step+": each endpoint's own port number in its slice", "%v, want %v", got, want)
		}
		check("8080 and 8090", map[string]int32{"n1": 8080, "n2": 8090})
		del(h, "pod", "n2")
		h.Apply(namedPortPod("n3", "node2", 8070))
		check("8090 replaced by 8070", map[string]int32{"n1": 8080, "n3": 8070})
	})
}

// TestExternalIP: spec.externalIPs holds an address no node has
// (198.18.0.250, on the underlay but unassigned): pods reach the Service's
// backends through it, every endpoint answering; removed from the Service,
// the address goes quiet.
func TestExternalIP(t *testing.T) {
	sc := harness.Scenario{Name: "external-ip", Title: "spec.externalIPs: an unassigned address reaches the backends", Group: results.GroupPublishing}
	const extIP = "198.18.0.250"
	svc := func(ips string) string {
		return "apiVersion: v1\nkind: Service\nmetadata:\n  name: getip-external\nspec:\n  selector:\n    app: getip\n  externalIPs: " + ips + "\n  ports:\n    - protocol: TCP\n      port: 80\n      targetPort: http\n"
	}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, ""), clientPod("c2", "node2"), svc(`["` + extIP + `"]`)}}, func(h *harness.H) {
		backends := podIPs(h, h.NS, "getip-deployment-")
		for _, name := range []string{"client", "c2"} {
			everyEndpoint(h, "from "+name, client(h, h.NS, name), "tcp", extIP+":80", backends, 30)
		}
		h.Apply(svc("[]"))
		ok, what := quiet(h, client(h, h.NS, "client"), extIP+":80")
		h.Check(ok, "externalIPs removed: the address goes quiet", "%s", what)
	})
}
