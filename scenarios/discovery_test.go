package scenarios

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// seedHeadless is the seed's getip-service-headless, exactly as written.
const seedHeadless = `apiVersion: v1
kind: Service
metadata:
  name: getip-service-headless
spec:
  selector:
    app: getip
  clusterIP: None
  ports:
    - protocol: TCP
      port: 7070
      targetPort: 7080
`

// TestHeadlessDNS: the seed's `dig +short -t A
// getip-service-headless.default.svc.cluster.local.` returns every ready pod
// IP, asked with real dig both of the DNS pod directly (as the seed does) and
// of the kube-dns ClusterIP (through the datapath under test); scaling the
// Deployment changes the answer; a ClusterIP Service resolves to its VIP.
func TestHeadlessDNS(t *testing.T) {
	sc := harness.Scenario{Name: "headless-dns", Title: "Headless Service: DNS returns every pod", Group: results.GroupHeadless}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, ""), seedHeadless}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		var dnsPod string
		sys, err := h.P.Pods(h.Ctx, "kube-system")
		if err != nil {
			h.Fatalf("list kube-system pods: %v", err)
		}
		for _, p := range sys {
			if p.Labels["k8s-app"] == "kube-dns" {
				dnsPod = p.IP.String()
			}
		}
		h.Check(dnsPod != "", "cluster DNS pod runs", "kube-system coredns pod at %s", dnsPod)
		dig := func(server, name string) []string {
			out, err := c.Exec(h.Ctx, "dig", "+short", "+time=2", "+tries=2", "-t", "A", name, "@"+server)
			if err != nil {
				h.Fatalf("dig %s @%s: %v", name, server, err)
			}
			ips := strings.Fields(out)
			sort.Strings(ips)
			return ips
		}
		want := func() []string {
			var ips []string
			for ip := range podIPs(h, h.NS, "getip-deployment-") {
				ips = append(ips, ip)
			}
			sort.Strings(ips)
			return ips
		}
		name := "getip-service-headless." + h.NS + ".svc.cluster.local."
		got := dig(dnsPod, name)
		h.Check(fmt.Sprint(got) == fmt.Sprint(want()), "dig @pod returns every pod IP", "dig +short -t A %s @%s: %v (pods %v)", name, dnsPod, got, want())
		got = dig(plane.DNSServiceIP, name)
		h.Check(fmt.Sprint(got) == fmt.Sprint(want()), "dig @kube-dns ClusterIP returns every pod IP", "via %s through %s: %v", plane.DNSServiceIP, h.Mode, got)

		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "getip-deployment"}, 3); err != nil {
			h.Fatalf("scale: %v", err)
		}
		h.Programmed()
		got = dig(plane.DNSServiceIP, name)
		h.Check(len(got) == 3 && fmt.Sprint(got) == fmt.Sprint(want()), "answer follows scale-up", "%v", got)

		vip := strings.Split(clusterIP(h, h.NS, "getip-service"), ":")[0]
		got = dig(plane.DNSServiceIP, "getip-service."+h.NS+".svc.cluster.local.")
		h.Check(len(got) == 1 && got[0] == vip, "ClusterIP Service resolves to its VIP", "%v, want %s", got, vip)

		// And over TCP, through the kube-dns Service's TCP port.
		out, err := c.Exec(h.Ctx, "dig", "+tcp", "+short", "+time=2", "-t", "A", name, "@"+plane.DNSServiceIP)
		h.Check(err == nil && len(strings.Fields(out)) == 3, "DNS over TCP via the Service", "%q %v", out, err)
	})
}

// TestServiceEnvironment: the kubelet's variables for an active Service
// ({SVCNAME}_SERVICE_HOST/_PORT, name upper-cased, dashes to underscores, and
// the Docker-links ones) are computed for a pod, and what they point at
// answers from inside the pod.
func TestServiceEnvironment(t *testing.T) {
	sc := harness.Scenario{Name: "service-env", Title: "Environment variables point at a working Service", Group: results.GroupDiscovery}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, "")}}, func(h *harness.H) {
		// A pod created after the Service sees it in its environment.
		h.Apply(`apiVersion: v1
kind: Pod
metadata:
  name: late-client
spec:
  nodeName: node2
  containers:
    - name: c
      image: curl
`)
		env := map[string]string{}
		tgt, err := h.P.Target(h.Ctx, h.NS, "late-client")
		if err != nil {
			h.Fatalf("late-client: %v", err)
		}
		for _, e := range tgt.Env {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
		}
		vip := clusterIP(h, h.NS, "getip-service")
		host, port, _ := strings.Cut(vip, ":")
		h.Check(env["GETIP_SERVICE_SERVICE_HOST"] == host, "GETIP_SERVICE_SERVICE_HOST", "%q, want %q", env["GETIP_SERVICE_SERVICE_HOST"], host)
		h.Check(env["GETIP_SERVICE_SERVICE_PORT"] == port, "GETIP_SERVICE_SERVICE_PORT", "%q, want %q", env["GETIP_SERVICE_SERVICE_PORT"], port)
		link := "tcp://" + vip
		h.Check(env["GETIP_SERVICE_PORT"] == link, "Docker-links GETIP_SERVICE_PORT", "%q, want %q", env["GETIP_SERVICE_PORT"], link)
		h.Check(env["GETIP_SERVICE_PORT_80_TCP_ADDR"] == host && env["GETIP_SERVICE_PORT_80_TCP_PROTO"] == "tcp",
			"Docker-links GETIP_SERVICE_PORT_80_TCP_*", "ADDR=%q PROTO=%q", env["GETIP_SERVICE_PORT_80_TCP_ADDR"], env["GETIP_SERVICE_PORT_80_TCP_PROTO"])
		c := harness.NewClient("late-client", tgt.NS)
		addr := env["GETIP_SERVICE_SERVICE_HOST"] + ":" + env["GETIP_SERVICE_SERVICE_PORT"]
		in, _, err := c.GetInfo(h.Ctx, addr)
		h.Check(err == nil && podIPs(h, h.NS, "getip-deployment-")[in.IP()] != "", "the variables reach a backend", "GET http://%s/info from late-client: %s %v", addr, in.IP(), err)
	})
}
