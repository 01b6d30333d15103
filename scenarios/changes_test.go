package scenarios

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// changingService is Service "changing" of the given type: ExternalName to
// target, or a selector Service over the getip pods (port 80 -> http)
// with extra spec lines (a nodePort).
func changingService(typ, target, extra string) string {
	if typ == "ExternalName" {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: changing
spec:
  type: ExternalName
  externalName: %s
`, target)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: changing
spec:
  type: %s
  selector:
    app: getip
  ports:
    - protocol: TCP
      port: 80
      targetPort: http
%s`, typ, extra)
}

// nodePortService is a NodePort Service over the getip pods asking for
// nodePort np (0: allocated).
func nodePortService(name string, np int32) string {
	extra := ""
	if np != 0 {
		extra = fmt.Sprintf("      nodePort: %d\n", np)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  type: NodePort
  selector:
    app: getip
  ports:
    - protocol: TCP
      port: 80
      targetPort: http
%s`, name, extra)
}

// TestServiceTypeChanges: one live Service changes type, as upstream's
// conformance tests change it: ExternalName -> ClusterIP -> ExternalName
// -> NodePort -> ExternalName, then a NodePort Service -> ClusterIP. After
// each change the Service answers as its new type says (a CNAME for
// ExternalName, the backends through the ClusterIP and every node's
// NodePort) and nothing answers where the old type did: the old ClusterIP,
// the released nodePort. A released nodePort is taken again by another
// Service; while taken, a third asking for it is refused, as is one out of
// range; deleting a Service releases its nodePort too.
func TestServiceTypeChanges(t *testing.T) {
	sc := harness.Scenario{Name: "service-type-changes", Title: "A live Service changes type; its old addresses go quiet", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, "")}}, func(h *harness.H) {
		c, ext := client(h, h.NS, "client"), external(h)
		backends := podIPs(h, h.NS, "getip-deployment-")
		target := "getip-service." + h.NS + ".svc.cluster.local"
		name := "changing." + h.NS + ".svc.cluster.local."
		cname := func(step string) {
			h.T.Helper()
			svc := service(h, h.NS, "changing")
			h.Check(svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0, step+": no ClusterIP", "clusterIP %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
			for _, p := range svc.Spec.Ports {
				h.Check(p.NodePort == 0, step+": no nodePort", "port %d nodePort %d", p.Port, p.NodePort)
			}
			out, err := c.Exec(h.Ctx, "dig", "+short", "+time=2", "+tries=2", name, "@"+plane.DNSServiceIP)
			first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
			h.Check(err == nil && first == target+".", step+": DNS answers the CNAME", "dig +short %s: %q %v", name, out, err)
		}
		serves := func(step, addr string, from *harnessClient) {
			h.T.Helper()
			counts := reachesOne(h, from.c, addr, 20)
			h.Check(subset(counts, backends) && len(counts) > 0, step+": "+from.what+" reaches the backends", "%s: 20 requests answered by %v", addr, counts)
		}
		silent := func(step, addr string, from *harnessClient) {
			h.T.Helper()
			ok, what := quiet(h, from.c, addr)
			h.Check(ok, step+": nothing answers "+addr+" from "+from.what, "%s", what)
		}
		pod, outside := &harnessClient{c, "a pod"}, &harnessClient{ext, "outside"}

		// ExternalName, then ClusterIP.
		h.Apply(changingService("ExternalName", target, ""))
		cname("ExternalName")
		h.Apply(changingService("ClusterIP", "", ""))
		vip := service(h, h.NS, "changing").Spec.ClusterIP
		h.Check(netip.MustParseAddr(vip).IsValid(), "ExternalName -> ClusterIP: a ClusterIP is allocated", "%s", vip)
		serves("ExternalName -> ClusterIP", vip+":80", pod)
		out, err := c.Exec(h.Ctx, "dig", "+short", "+time=2", "+tries=2", name, "@"+plane.DNSServiceIP)
		h.Check(err == nil && strings.TrimSpace(out) == vip, "ExternalName -> ClusterIP: DNS answers the ClusterIP", "%q %v", out, err)

		// ClusterIP -> ExternalName: the old VIP goes quiet.
		h.Apply(changingService("ExternalName", target, ""))
		cname("ClusterIP -> ExternalName")
		silent("ClusterIP -> ExternalName", vip+":80", pod)

		// ExternalName -> NodePort.
		h.Apply(changingService("NodePort", "", ""))
		svc := service(h, h.NS, "changing")
		np := svc.Spec.Ports[0].NodePort
		h.Check(svc.Spec.ClusterIP != "" && np >= 30000 && np <= 32767, "ExternalName -> NodePort: ClusterIP and nodePort allocated", "clusterIP %s nodePort %d", svc.Spec.ClusterIP, np)
		serves("ExternalName -> NodePort", svc.Spec.ClusterIP+":80", pod)
		for _, n := range h.P.Nodes() {
			serves("ExternalName -> NodePort", fmt.Sprintf("%s:%d", n.IP, np), outside)
		}

		// NodePort -> ExternalName: the nodePort is released, on every node.
		h.Apply(changingService("ExternalName", target, ""))
		cname("NodePort -> ExternalName")
		for _, n := range h.P.Nodes() {
			silent("NodePort -> ExternalName", fmt.Sprintf("%s:%d", n.IP, np), outside)
		}
		silent("NodePort -> ExternalName", svc.Spec.ClusterIP+":80", pod)

		// The released nodePort is taken again; meanwhile nobody else gets
		// it, and a nodePort out of range is refused.
		h.Apply(nodePortService("taker", np))
		h.Check(ports(h, "taker")[0].NodePort == np, "the released nodePort is taken again", "taker has nodePort %d", ports(h, "taker")[0].NodePort)
		for _, n := range h.P.Nodes() {
			serves("taken again", fmt.Sprintf("%s:%d", n.IP, np), outside)
		}
		err = rejected(h, "collision", nodePortService("collider", np))
		h.Check(err != nil && strings.Contains(err.Error(), "spec.ports[0].nodePort") && strings.Contains(err.Error(), "provided port is already allocated"),
			"a taken nodePort is refused", "%v", err)
		err = rejected(h, "out-of-range", nodePortService("far", 40000))
		h.Check(err != nil && strings.Contains(err.Error(), "provided port is not in the valid range. The range of valid ports is 30000-32767"),
			"a nodePort out of range is refused", "%v", err)

		// NodePort -> ClusterIP: the ClusterIP stays and serves, the
		// nodePort goes quiet and is free again.
		takerVIP := service(h, h.NS, "taker").Spec.ClusterIP
		h.Apply(strings.Replace(nodePortService("taker", 0), "type: NodePort", "type: ClusterIP", 1))
		tk := service(h, h.NS, "taker")
		h.Check(tk.Spec.ClusterIP == takerVIP && tk.Spec.Ports[0].NodePort == 0, "NodePort -> ClusterIP keeps the ClusterIP, drops the nodePort",
			"clusterIP %s (was %s), nodePort %d", tk.Spec.ClusterIP, takerVIP, tk.Spec.Ports[0].NodePort)
		serves("NodePort -> ClusterIP", takerVIP+":80", pod)
		for _, n := range h.P.Nodes() {
			silent("NodePort -> ClusterIP", fmt.Sprintf("%s:%d", n.IP, np), outside)
		}

		// Deleting a Service releases its nodePort.
		h.Apply(nodePortService("again", np))
		del(h, "service", "again")
		h.Apply(nodePortService("again2", np))
		node2 := h.P.Nodes()[1]
		serves("released on delete, taken again", fmt.Sprintf("%s:%d", node2.IP, np), outside)
	})
}

// harnessClient is a client and how the checks name it.
type harnessClient struct {
	c    *harness.Client
	what string
}

// webService is Service name over the getip pods with one TCP port per
// entry of ports (each named p<port>, to http), of type typ.
func webService(name, typ string, ports ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  type: %s\n  selector:\n    app: getip\n  ports:\n", name, typ)
	for _, p := range ports {
		fmt.Fprintf(&b, "    - name: p%d\n      protocol: TCP\n      port: %d\n      targetPort: http\n", p, p)
	}
	return b.String()
}

// TestServiceChanges: a live Service gains a port and loses one; two
// Services over one selector, one deleted, the other still serving and a
// third created; a Service deleted and recreated with the same name; a
// NodePort Service deleted. After each change the Services that exist
// answer on exactly their ports, and no stale rule answers for what is
// gone: a removed port, a deleted Service's ClusterIP (before and after it
// is recreated, unless the new one got the same address) and nodePort.
func TestServiceChanges(t *testing.T) {
	sc := harness.Scenario{Name: "service-changes", Title: "Ports added and removed, Services deleted and recreated", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, ""), webService("web", "ClusterIP", 80)}}, func(h *harness.H) {
		c, ext := client(h, h.NS, "client"), external(h)
		backends := podIPs(h, h.NS, "getip-deployment-")
		serves := func(step, addr string, from *harness.Client) {
			h.T.Helper()
			counts := reachesOne(h, from, addr, 20)
			h.Check(subset(counts, backends) && len(counts) > 0, step+": "+addr+" serves", "20 requests from %s answered by %v", from.Name, counts)
		}
		silent := func(step, addr string, from *harness.Client) {
			h.T.Helper()
			ok, what := quiet(h, from, addr)
			h.Check(ok, step+": nothing answers "+addr, "from %s: %s", from.Name, what)
		}
		vip := service(h, h.NS, "web").Spec.ClusterIP
		serves("one port", vip+":80", c)
		silent("one port", vip+":8080", c)

		h.Apply(webService("web", "ClusterIP", 80, 8080))
		serves("port added", vip+":80", c)
		serves("port added", vip+":8080", c)
		h.Apply(webService("web", "ClusterIP", 8080))
		silent("port removed", vip+":80", c)
		serves("port removed", vip+":8080", c)

		// Two Services over one selector: delete one, the other serves; a
		// third comes up beside it.
		h.Apply(webService("web2", "ClusterIP", 80))
		vip2 := service(h, h.NS, "web2").Spec.ClusterIP
		serves("two Services", vip2+":80", c)
		del(h, "service", "web")
		silent("one of two deleted", vip+":8080", c)
		serves("one of two deleted", vip2+":80", c)
		h.Apply(webService("web3", "ClusterIP", 80))
		serves("a third created", service(h, h.NS, "web3").Spec.ClusterIP+":80", c)
		serves("a third created", vip2+":80", c)

		// Deleted and recreated with the same name.
		del(h, "service", "web2")
		silent("deleted", vip2+":80", c)
		h.Apply(webService("web2", "ClusterIP", 80))
		again := service(h, h.NS, "web2").Spec.ClusterIP
		serves("recreated", again+":80", c)
		if again != vip2 {
			silent("recreated elsewhere: the old ClusterIP stays quiet", vip2+":80", c)
		}
		h.Figure("recreated Service got its old ClusterIP", map[bool]float64{true: 1, false: 0}[again == vip2], "")

		// A NodePort Service deleted: its nodePort goes quiet on every node.
		h.Apply(webService("web4", "NodePort", 80))
		np := ports(h, "web4")[0].NodePort
		for _, n := range h.P.Nodes() {
			serves("NodePort", fmt.Sprintf("%s:%d", n.IP, np), ext)
		}
		del(h, "service", "web4")
		for _, n := range h.P.Nodes() {
			silent("NodePort Service deleted", fmt.Sprintf("%s:%d", n.IP, np), ext)
		}
		serves("the others unaffected", again+":80", c)
	})
}

// dualEcho is a Deployment of echo pods listening on 5353 over TCP and UDP
// and Service "dual" of type typ with port 53 on the protocols given (each
// port named after its protocol, to 5353).
func dualEcho(typ string, protocols ...string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: dual-echo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: dual-echo
  template:
    metadata:
      labels:
        app: dual-echo
    spec:
      containers:
        - name: echo
          image: echo
          ports:
            - containerPort: 5353
              protocol: TCP
            - containerPort: 5353
              protocol: UDP
---
`)
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata:\n  name: dual\nspec:\n  type: %s\n  selector:\n    app: dual-echo\n  ports:\n", typ)
	for _, p := range protocols {
		fmt.Fprintf(&b, "    - name: %s\n      protocol: %s\n      port: 53\n      targetPort: 5353\n", strings.ToLower(p), p)
	}
	return b.String()
}

// TestSamePortProtocols: one Service port number on TCP and UDP (the
// upstream conformance test's shape): both answer through the ClusterIP;
// changed to NodePort, each protocol gets a nodePort that answers from
// outside on every node; with UDP removed TCP keeps working and UDP goes
// quiet, and the other way round (each removal replaces the port list, as
// an update does: kubectl apply merges Service ports on the number alone
// and would remove both).
func TestSamePortProtocols(t *testing.T) {
	sc := harness.Scenario{Name: "same-port-protocols", Title: "One port number on TCP and UDP, one protocol removed", Group: results.GroupMultiPort}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), dualEcho("ClusterIP", "TCP", "UDP")}}, func(h *harness.H) {
		c, ext := client(h, h.NS, "client"), external(h)
		pods := map[string]bool{}
		for _, name := range podIPs(h, h.NS, "dual-echo-") {
			pods[h.NS+"/"+name] = true
		}
		answers := func(step string, from *harness.Client, network, addr string) {
			h.T.Helper()
			seen := map[string]int{}
			for i := range 10 {
				pod, _ := echoFrom(h, from, network, addr, fmt.Sprintf("ping-%d", i))
				seen[pod]++
			}
			ok := len(seen) > 0
			for p := range seen {
				ok = ok && pods[p]
			}
			h.Check(ok, fmt.Sprintf("%s: %s %s answers", step, network, addr), "10 lines from %s answered by %v", from.Name, seen)
		}
		vip := service(h, h.NS, "dual").Spec.ClusterIP + ":53"
		answers("TCP and UDP", c, "tcp", vip)
		answers("TCP and UDP", c, "udp", vip)

		h.Apply(dualEcho("NodePort", "TCP", "UDP"))
		nps := map[corev1.Protocol]int32{}
		for _, p := range ports(h, "dual") {
			nps[p.Protocol] = p.NodePort
		}
		h.Check(nps[corev1.ProtocolTCP] != 0 && nps[corev1.ProtocolUDP] != 0, "changed to NodePort: both protocols get a nodePort", "%v", nps)
		for _, n := range h.P.Nodes() {
			answers("NodePort", ext, "tcp", fmt.Sprintf("%s:%d", n.IP, nps[corev1.ProtocolTCP]))
			answers("NodePort", ext, "udp", fmt.Sprintf("%s:%d", n.IP, nps[corev1.ProtocolUDP]))
		}
		answers("NodePort", c, "udp", vip)

		// kubectl apply (and a plain strategic merge) cannot remove one of
		// the two: Service ports merge on the port number alone, so both
		// would go. The list is replaced whole, as an update would.
		replacePorts := func(p corev1.ServicePort) {
			h.T.Helper()
			b, err := json.Marshal(map[string]any{"spec": map[string]any{"ports": []any{map[string]string{"$patch": "replace"}, p}}})
			if err != nil {
				h.Fatalf("patch: %v", err)
			}
			if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: "dual"}, b); err != nil {
				h.Fatalf("patch %s: %v", b, err)
			}
			h.Programmed()
		}
		tcpPort := corev1.ServicePort{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(5353), NodePort: nps[corev1.ProtocolTCP]}
		replacePorts(tcpPort)
		h.Check(len(ports(h, "dual")) == 1 && ports(h, "dual")[0].NodePort == nps[corev1.ProtocolTCP], "UDP removed: TCP keeps its nodePort", "%v", ports(h, "dual"))
		answers("UDP removed", c, "tcp", vip)
		ok, what := quietUDP(h, c, vip)
		h.Check(ok, "UDP removed: UDP goes quiet", "%s: %s", vip, what)
		for _, n := range h.P.Nodes() {
			addr := fmt.Sprintf("%s:%d", n.IP, nps[corev1.ProtocolUDP])
			ok, what := quietUDP(h, ext, addr)
			h.Check(ok, "UDP removed: its nodePort goes quiet", "%s: %s", addr, what)
		}

		replacePorts(corev1.ServicePort{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(5353)})
		answers("TCP removed", c, "udp", vip)
		for _, n := range h.P.Nodes() {
			addr := fmt.Sprintf("%s:%d", n.IP, nps[corev1.ProtocolTCP])
			ok, what := quiet(h, ext, addr)
			h.Check(ok, "TCP removed: its nodePort goes quiet", "%s: %s", addr, what)
		}
		ok, what = quiet(h, c, vip)
		h.Check(ok, "TCP removed: TCP goes quiet", "%s: %s", vip, what)
	})
}

// TestProxyLabels: a Service labelled service.kubernetes.io/service-proxy-name
// (another proxy's) is left alone by the node proxies: its ClusterIP answers
// nothing while an unlabelled twin over the same pods serves; with the label
// removed it serves, and with it added back it goes quiet again. The
// service.kubernetes.io/headless label filters EndpointSlices, not Services
// (kube-proxy's two informers, cmd/kube-proxy/app/server.go v1.37; the
// EndpointSlice controller drops it from the slices of a Service with a
// ClusterIP): a Service with a ClusterIP that carries it serves, and a
// selectorless Service whose user-written slice gains it (upstream's test)
// goes quiet.
func TestProxyLabels(t *testing.T) {
	sc := harness.Scenario{Name: "proxy-labels", Title: "service-proxy-name and headless labels: which Services and slices the proxies leave alone", Group: results.GroupService}
	labelled := func(name, key, value string) string {
		return strings.Replace(webService(name, "ClusterIP", 80), "  name: "+name+"\n",
			fmt.Sprintf("  name: %s\n  labels:\n    %s: %q\n", name, key, value), 1)
	}
	const proxyName, headless = "service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless"
	opts := harness.Options{Manifests: []string{getipApp(2, ""), webService("plain", "ClusterIP", 80),
		labelled("foreign", proxyName, "foo-bar"), labelled("headless-label", headless, "")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		c := client(h, h.NS, "client")
		backends := podIPs(h, h.NS, "getip-deployment-")
		addr := func(name string) string { return service(h, h.NS, name).Spec.ClusterIP + ":80" }
		serves := func(step, name string) {
			h.T.Helper()
			counts := reachesOne(h, c, addr(name), 20)
			h.Check(subset(counts, backends) && len(counts) > 0, step+": "+name+" serves", "%s: %v", addr(name), counts)
		}
		silent := func(step, name string) {
			h.T.Helper()
			ok, what := quiet(h, c, addr(name))
			h.Check(ok, step+": "+name+" is left alone", "%s: %s", addr(name), what)
		}
		serves("labelled", "plain")
		silent("labelled "+proxyName, "foreign")
		serves("labelled "+headless+" (it filters slices, not Services)", "headless-label")
		ref := plane.Ref{Kind: "service", Namespace: h.NS, Name: "foreign"}
		if err := h.P.Label(h.Ctx, ref, map[string]string{proxyName + "-": ""}); err != nil {
			h.Fatalf("remove label %s from foreign: %v", proxyName, err)
		}
		h.Programmed()
		serves("label removed", "foreign")
		if err := h.P.Label(h.Ctx, ref, map[string]string{proxyName: "x"}); err != nil {
			h.Fatalf("add label %s to foreign: %v", proxyName, err)
		}
		h.Programmed()
		silent("label added back", "foreign")
		serves("the unlabelled twin unaffected", "plain")

		// Upstream's test (v1.37) puts the headless label on an EndpointSlice
		// of a selectorless Service: every proxy then leaves it alone.
		var ip string
		for backend := range backends {
			ip = backend
			break
		}
		slice := userSlice("sliced-1", "sliced", "a:80", ip)
		h.Apply(selectorless("sliced", "a:80"), slice)
		serves("a user-written slice", "sliced")
		h.Apply(strings.Replace(slice, "    endpointslice.kubernetes.io/managed-by: svcsim-scenario\n",
			"    endpointslice.kubernetes.io/managed-by: svcsim-scenario\n    "+headless+": \"\"\n", 1))
		silent("its slice labelled "+headless, "sliced")
	})
}
