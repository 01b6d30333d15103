package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/podexec"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// inPod runs argv in pod name's network namespace with the files its
// kubelet would write bound over /etc/resolv.conf (from its dnsPolicy and
// dnsConfig) and /etc/hosts, in a private mount namespace (the host's files
// are untouched), so glibc's resolver and dig's +search read the pod's
// nameservers, search list, ndots and hosts entries. Bounded by 90 s (a
// batch of lookups in the kernel lane under emulation).
func inPod(h *harness.H, name string, argv ...string) (string, error) {
	h.T.Helper()
	tgt, err := h.P.Target(h.Ctx, h.NS, name)
	if err != nil {
		h.Fatalf("target %s: %v", name, err)
	}
	dir := h.T.TempDir()
	var spec podexec.Spec
	if tgt.ResolvConf != "" {
		path := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(path, []byte(tgt.ResolvConf), 0o644); err != nil {
			h.Fatalf("write resolv.conf: %v", err)
		}
		spec.Mounts = append(spec.Mounts, podexec.Mount{Path: "/etc/resolv.conf", Source: path, ReadOnly: true})
	}
	if tgt.Hosts != "" {
		path := filepath.Join(dir, "hosts")
		if err := os.WriteFile(path, []byte(tgt.Hosts), 0o644); err != nil {
			h.Fatalf("write hosts: %v", err)
		}
		spec.Mounts = append(spec.Mounts, podexec.Mount{Path: "/etc/hosts", Source: path, ReadOnly: true})
	}
	scratch := filepath.Join(dir, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		h.Fatalf("scratch: %v", err)
	}
	spec.Scratch = scratch
	ctx, cancel := context.WithTimeout(h.Ctx, 90*time.Second)
	defer cancel()
	var out []byte
	err = tgt.NS.Do(func() error {
		cmd, err := podexec.Command(spec, tgt.Env, argv)
		if err != nil {
			return err
		}
		var buf strings.Builder
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
		err = cmd.Wait()
		stop()
		out = []byte(buf.String())
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s in pod %s: %w: %s", strings.Join(argv, " "), name, err, out)
	}
	return string(out), nil
}

// digAnswers runs dig +search for name and type over UDP or TCP in pod
// client and returns the answer section's data fields, sorted.
func digAnswers(h *harness.H, client, name, typ string, tcp bool) []string {
	h.T.Helper()
	proto := "+notcp"
	if tcp {
		proto = "+tcp"
	}
	out, err := inPod(h, client, "dig", proto, "+noall", "+answer", "+search", "+time=2", "+tries=2", name, typ)
	if err != nil {
		h.Fatalf("%v", err)
	}
	return parseDig(out, typ)
}

// parseDig returns the data fields of dig's answer lines of type typ, sorted.
func parseDig(out, typ string) []string {
	var data []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[3] == typ {
			data = append(data, strings.Join(f[4:], " "))
		}
	}
	sort.Strings(data)
	return data
}

// batch collects shell commands for one pod and runs them in one podexec
// (sh running each in turn), so a scenario starts a few processes instead
// of dozens: each start re-executes the test binary, which takes seconds in
// the kernel lane under emulation. Each command's callback gets its output
// and whether it exited 0. Names are single-quoted: they must not contain
// a quote.
type batch struct {
	h    *harness.H
	pod  string
	cmds []string
	then []func(out string, ok bool)
}

func newBatch(h *harness.H, pod string) *batch { return &batch{h: h, pod: pod} }

// sh adds a command (its words single-quoted).
func (b *batch) sh(then func(out string, ok bool), argv ...string) {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + a + "'"
	}
	b.cmds = append(b.cmds, strings.Join(q, " "))
	b.then = append(b.then, then)
}

// dig adds dig +search for name and type over UDP or TCP; then gets the
// answer section's data fields, sorted.
func (b *batch) dig(name, typ string, tcp bool, then func(got []string)) {
	proto := "+notcp"
	if tcp {
		proto = "+tcp"
	}
	b.sh(func(out string, ok bool) {
		if !ok {
			b.h.Fatalf("dig %s %s in pod %s: %s", name, typ, b.pod, out)
		}
		then(parseDig(out, typ))
	}, "dig", proto, "+noall", "+answer", "+search", "+time=2", "+tries=2", name, typ)
}

// run runs the commands collected so far and calls their callbacks in order.
func (b *batch) run() {
	b.h.T.Helper()
	var script strings.Builder
	for i, c := range b.cmds {
		fmt.Fprintf(&script, "echo '@@begin %d'; %s 2>&1; echo \"@@end %d $?\"\n", i, c, i)
	}
	out, err := inPod(b.h, b.pod, "sh", "-c", script.String())
	if err != nil {
		b.h.Fatalf("%v", err)
	}
	rest := out
	for i := range b.cmds {
		begin, end := fmt.Sprintf("@@begin %d\n", i), fmt.Sprintf("@@end %d ", i)
		bi, ei := strings.Index(rest, begin), strings.Index(rest, end)
		if bi < 0 || ei < bi {
			b.h.Fatalf("batch in pod %s: no output of %q in %q", b.pod, b.cmds[i], out)
		}
		body := rest[bi+len(begin) : ei]
		status, _, _ := strings.Cut(rest[ei+len(end):], "\n")
		rest = rest[ei+len(end):]
		b.then[i](body, status == "0")
	}
	b.cmds, b.then = nil, nil
}

// dnsApp: pods labelled dns-test (one with hostname and subdomain), the
// headless Service dns-test-service, the regular test-service-2 over the
// same pods (a named port http), the headless subdomain Service
// dns-test-service-2, and a client pod.
const dnsApp = `apiVersion: v1
kind: Pod
metadata:
  name: dns-a
  labels:
    dns-test: "true"
spec:
  nodeName: node1
  hostname: dns-querier-2
  subdomain: dns-test-service-2
  containers:
    - name: server
      image: echo
      ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Pod
metadata:
  name: dns-b
  labels:
    dns-test: "true"
spec:
  nodeName: node2
  containers:
    - name: server
      image: echo
      ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Service
metadata:
  name: dns-test-service
spec:
  clusterIP: None
  selector:
    dns-test: "true"
  ports:
    - name: http
      port: 80
      targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: test-service-2
spec:
  selector:
    dns-test: "true"
  ports:
    - name: http
      port: 80
      targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: dns-test-service-2
spec:
  clusterIP: None
  selector:
    dns-test: "true"
  ports:
    - name: http
      port: 80
      targetPort: http
`

// TestDNSNames: cluster DNS as a pod asks it, through the pod's own
// resolv.conf (cluster nameserver, search <ns>.svc.<domain>, svc.<domain>,
// <domain>, ndots:5) with real dig (+search) over UDP and TCP and glibc's
// getent: a headless Service's A records are its pods, fully and partly
// qualified; SRV records for the named port of a headless and a regular
// Service; a ClusterIP Service's A record and its PTR; pod A records
// (<a-b-c-d>.<ns>.pod); a pod with hostname and subdomain under its
// headless Service; an ExternalName Service's CNAME, retargeted, then the
// Service changed to ClusterIP answering its A record; a headless
// Service whose addresses are only in two user-written EndpointSlices.
func TestDNSNames(t *testing.T) {
	sc := harness.Scenario{Name: "dns-names", Title: "DNS as pods see it: search paths, SRV, PTR, pod names, ExternalName", Group: results.GroupDiscovery}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), dnsApp}}, func(h *harness.H) {
		const domain = "cluster.local"
		ns := h.NS
		podA, podB := pod(h, ns, "dns-a").IP.String(), pod(h, ns, "dns-b").IP.String()
		both := fmt.Sprint(sortedStrings(podA, podB))
		vip := service(h, ns, "test-service-2").Spec.ClusterIP
		b := newBatch(h, "client")
		for _, tcp := range []bool{false, true} {
			over := map[bool]string{false: "UDP", true: "TCP"}[tcp]
			for _, name := range []string{
				"dns-test-service." + ns + ".svc." + domain,                                     // fully qualified
				"dns-test-service." + ns, "dns-test-service." + ns + ".svc", "dns-test-service", // through the search list
			} {
				b.dig(name, "A", tcp, func(got []string) {
					h.Check(fmt.Sprint(got) == both, "headless A "+name+" over "+over, "%v, want %s", got, both)
				})
			}
			for _, name := range []string{"test-service-2", "test-service-2." + ns, "test-service-2." + ns + ".svc." + domain} {
				b.dig(name, "A", tcp, func(got []string) {
					h.Check(fmt.Sprint(got) == "["+vip+"]", "ClusterIP A "+name+" over "+over, "%v, want %s", got, vip)
				})
			}
			for _, name := range []string{"_http._tcp.test-service-2." + ns + ".svc." + domain, "_http._tcp.test-service-2." + ns + ".svc"} {
				b.dig(name, "SRV", tcp, func(got []string) {
					ok := len(got) == 1 && strings.HasSuffix(got[0], " 80 test-service-2."+ns+".svc."+domain+".")
					h.Check(ok, "SRV "+name+" over "+over, "%v", got)
				})
			}
			for _, name := range []string{"_http._tcp.dns-test-service." + ns + ".svc." + domain, "_http._tcp.dns-test-service." + ns + ".svc"} {
				b.dig(name, "SRV", tcp, func(got []string) {
					ok := len(got) == 2
					for _, g := range got {
						ok = ok && strings.Contains(g, " 80 ") && strings.HasSuffix(g, ".dns-test-service."+ns+".svc."+domain+".")
					}
					h.Check(ok, "headless SRV "+name+" over "+over+": one per pod", "%v", got)
				})
			}
			podName := strings.ReplaceAll(podB, ".", "-") + "." + ns + ".pod." + domain
			b.dig(podName, "A", tcp, func(got []string) {
				h.Check(fmt.Sprint(got) == "["+podB+"]", "pod A record "+podName+" over "+over, "%v", got)
			})
			host := "dns-querier-2.dns-test-service-2." + ns + ".svc." + domain
			for _, name := range []string{host, "dns-querier-2.dns-test-service-2"} {
				b.dig(name, "A", tcp, func(got []string) {
					h.Check(fmt.Sprint(got) == "["+podA+"]", "hostname.subdomain A "+name+" over "+over, "%v, want %s", got, podA)
				})
			}
		}
		b.sh(func(ptr string, ok bool) {
			h.Check(ok && strings.TrimSpace(ptr) == "test-service-2."+ns+".svc."+domain+".", "PTR of the ClusterIP", "dig -x %s: %q", vip, ptr)
		}, "dig", "+short", "+time=2", "-x", vip)
		// glibc's resolver, with the pod's search list and ndots.
		b.sh(func(out string, ok bool) {
			h.Check(ok && strings.HasPrefix(out, vip+" "), "getent hosts test-service-2 (glibc, search list)", "%q", out)
		}, "getent", "hosts", "test-service-2")
		b.sh(func(out string, ok bool) {
			h.Check(ok && strings.Contains(out, podA) && strings.Contains(out, podB), "getent ahostsv4 dns-test-service.<ns> (glibc)", "%q", out)
		}, "getent", "ahostsv4", "dns-test-service."+ns)
		b.run()

		// A headless Service whose endpoints are only in EndpointSlices a
		// user wrote (two of them; no Endpoints object).
		h.Apply(strings.Replace(selectorless("dns-slices", "a:80"), "spec:\n", "spec:\n  clusterIP: None\n", 1),
			userSlice("dns-slices-1", "dns-slices", "a:80", podA), userSlice("dns-slices-2", "dns-slices", "a:80", podB))
		h.Check(endpointsOf(h, "dns-slices") == nil, "user-written slices only: no Endpoints object", "%v", endpointsOf(h, "dns-slices") != nil)
		for _, tcp := range []bool{false, true} {
			b.dig("dns-slices", "A", tcp, func(got []string) {
				h.Check(fmt.Sprint(got) == both, "A records from two user-written EndpointSlices", "%v, want %s (tcp %v)", got, both, tcp)
			})
		}
		b.run()

		// ExternalName: a CNAME, retargeted, then a ClusterIP Service.
		extName := func(target string) string {
			return "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns-test-service-3\nspec:\n  type: ExternalName\n  externalName: " + target + "\n"
		}
		fqdn := "dns-test-service-3." + ns + ".svc." + domain
		for _, target := range []string{"foo.example.com", "bar.example.com"} {
			h.Apply(extName(target))
			for _, tcp := range []bool{false, true} {
				b.dig(fqdn, "CNAME", tcp, func(got []string) {
					h.Check(fmt.Sprint(got) == "["+target+".]", "ExternalName CNAME to "+target, "%v (tcp %v)", got, tcp)
				})
			}
			b.run()
		}
		h.Apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: dns-test-service-3\nspec:\n  type: ClusterIP\n  selector:\n    dns-test: \"true\"\n  ports:\n    - name: http\n      port: 80\n      targetPort: http\n")
		vip3 := service(h, ns, "dns-test-service-3").Spec.ClusterIP
		got := digAnswers(h, "client", fqdn, "A", false)
		h.Check(fmt.Sprint(got) == "["+vip3+"]", "ExternalName changed to ClusterIP: its A record", "%v, want %s", got, vip3)
	})
}

func sortedStrings(s ...string) []string {
	sort.Strings(s)
	return s
}

// dnsPod is a client pod called name on node1 with extra spec lines.
func dnsPod(name, spec string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\nspec:\n  nodeName: node1\n" + spec + "  containers:\n    - name: c\n      image: curl\n"
}

// TestPodDNSConfig: the resolv.conf and /etc/hosts a pod gets, and that
// real lookups follow them. dnsPolicy None with dnsConfig (the cluster DNS
// pod as the only nameserver, a search path, ndots:2 and edns0) is exactly
// that file, and a short name resolves through its search path; ClusterFirst
// merges dnsConfig into the cluster settings; seven search paths over 256
// characters, and search paths with an underscore and a single dot, are
// kept and a lookup walks them; a hostNetwork pod with
// ClusterFirstWithHostNet resolves Service names from the node's
// namespace; /etc/hosts holds the pod's own names (hostname, FQDN under its
// subdomain) and its hostAliases, which glibc's getent answers from.
func TestPodDNSConfig(t *testing.T) {
	sc := harness.Scenario{Name: "pod-dns-config", Title: "dnsPolicy, dnsConfig and /etc/hosts as pods see them", Group: results.GroupDiscovery}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, "")}}, func(h *harness.H) {
		ns := h.NS
		var dnsPodIP string
		sys, err := h.P.Pods(h.Ctx, "kube-system")
		if err != nil {
			h.Fatalf("list kube-system pods: %v", err)
		}
		for _, p := range sys {
			if p.Labels["k8s-app"] == "kube-dns" {
				dnsPodIP = p.IP.String()
			}
		}
		h.Check(dnsPodIP != "", "cluster DNS pod runs", "%s", dnsPodIP)
		vip := service(h, ns, "getip-service").Spec.ClusterIP
		long := make([]string, 6)
		for i := range long {
			long[i] = fmt.Sprintf("search-path-%d-%s.cluster.local", i, strings.Repeat("x", 40))
		}
		yamlList := func(items ...string) string { return "[" + strings.Join(quoteAll(items), ", ") + "]" }
		h.Apply(
			dnsPod("none", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [\""+dnsPodIP+"\"]\n    searches: [\""+ns+".svc.cluster.local\"]\n    options:\n      - name: ndots\n        value: \"2\"\n      - name: edns0\n"),
			dnsPod("merged", "  dnsConfig:\n    searches: [\"extra.example\"]\n    options:\n      - name: ndots\n        value: \"3\"\n"),
			dnsPod("long-search", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [\""+dnsPodIP+"\"]\n    searches: "+yamlList(append(long, ns+".svc.cluster.local")...)+"\n"),
			dnsPod("odd-search", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [\""+dnsPodIP+"\"]\n    searches: [\"_sip._tcp.abc_d.example.com\", \"abc_d.example.com\", \".\"]\n"),
			dnsPod("hostnet", "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n"),
			dnsPod("named", "  hostname: dns-querier-1\n  subdomain: dns-test-service\n  hostAliases:\n    - ip: \"10.1.2.3\"\n      hostnames: [\"foo.local\", \"bar.local\"]\n"),
		)
		// One batch per pod: its resolv.conf, then lookups through it.
		resolv := func(b *batch, check func(got string)) {
			b.sh(func(out string, ok bool) {
				if !ok {
					h.Fatalf("cat /etc/resolv.conf in %s: %s", b.pod, out)
				}
				check(out)
			}, "cat", "/etc/resolv.conf")
		}
		getent := func(b *batch, name, want, what string) {
			b.sh(func(out string, ok bool) {
				h.Check(ok && strings.HasPrefix(out, want+" "), what, "getent hosts %s in %s: %q, want %s", name, b.pod, out, want)
			}, "getent", "hosts", name)
		}
		b := newBatch(h, "none")
		resolv(b, func(got string) {
			want := "search " + ns + ".svc.cluster.local\nnameserver " + dnsPodIP + "\noptions ndots:2 edns0\n"
			h.Check(got == want, "dnsPolicy None: resolv.conf is dnsConfig alone", "%q, want %q", got, want)
		})
		b.dig("getip-service", "A", false, func(got []string) {
			h.Check(fmt.Sprint(got) == "["+vip+"]", "dnsPolicy None: a short name resolves through its search path and nameserver", "%v, want %s", got, vip)
		})
		getent(b, "getip-service", vip, "dnsPolicy None: glibc resolves it too")
		b.run()

		b = newBatch(h, "merged")
		resolv(b, func(got string) {
			want := "search " + ns + ".svc.cluster.local svc.cluster.local cluster.local extra.example\nnameserver " + plane.DNSServiceIP + "\noptions ndots:3\n"
			h.Check(got == want, "ClusterFirst with dnsConfig: merged", "%q, want %q", got, want)
		})
		b.run()

		b = newBatch(h, "long-search")
		resolv(b, func(got string) {
			h.Check(strings.Count(got, "search-path-") == 6 && len(strings.TrimPrefix(strings.SplitN(got, "\n", 2)[0], "search ")) > 256,
				"seven search paths over 256 characters kept", "%q", got)
		})
		for _, tcp := range []bool{false, true} {
			b.dig("getip-service", "A", tcp, func(got []string) {
				h.Check(fmt.Sprint(got) == "["+vip+"]", "a lookup walks seven search paths to the last", "%v (tcp %v), want %s", got, tcp, vip)
			})
		}
		getent(b, "getip-service", vip, "glibc walks the long search list")
		b.run()

		b = newBatch(h, "odd-search")
		resolv(b, func(got string) {
			h.Check(strings.HasPrefix(got, "search _sip._tcp.abc_d.example.com abc_d.example.com .\n"), "search paths with an underscore and a single dot kept", "%q", got)
		})
		fq := "getip-service." + ns + ".svc.cluster.local"
		b.dig(fq, "A", false, func(got []string) {
			h.Check(fmt.Sprint(got) == "["+vip+"]", "and lookups still work", "%s: %v", fq, got)
		})
		b.run()

		b = newBatch(h, "hostnet")
		resolv(b, func(got string) {
			h.Check(strings.Contains(got, "nameserver "+plane.DNSServiceIP+"\n") && strings.Contains(got, "search "+ns+".svc.cluster.local"),
				"hostNetwork with ClusterFirstWithHostNet: cluster DNS", "%q", got)
		})
		for _, name := range []string{"getip-service", "getip-service." + ns, "getip-service." + ns + ".svc"} {
			b.dig(name, "A", false, func(got []string) {
				h.Check(fmt.Sprint(got) == "["+vip+"]", "hostNetwork pod resolves "+name+" from the node's namespace", "%v", got)
			})
		}
		b.run()

		ip := pod(h, ns, "named").IP.String()
		fqdn := "dns-querier-1.dns-test-service." + ns + ".svc.cluster.local"
		b = newBatch(h, "named")
		for _, e := range [][2]string{{"dns-querier-1", ip}, {fqdn, ip}, {"foo.local", "10.1.2.3"}, {"bar.local", "10.1.2.3"}} {
			getent(b, e[0], e[1], "/etc/hosts: getent hosts "+e[0])
		}
		b.run()
	})
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
