package scenarios

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/svcsim/svcsim/addons/ingress"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/sim/seeddir"
)

// The seed's Ingress scenarios. ingress-nginx's published manifests
// (../shared/seed/ingress-nginx, read as test input: mandatory.yaml with
// the seed's 0.28.0 tag, service-nodeport.yaml) bring the controller; the
// seed's own manifests (sim/testdata/seed) bring getip-service,
// myhttp-service and the ingress-http Ingress in its extensions/v1beta1
// form. svcsim runs a real nginx in the controller's pod (package
// addons/ingress). Requests come from the external namespace with a Host
// header, as the seed's users would send them:
//
//	Host www.tabops.com -> a getip pod    Host www.pdd.com -> a myhttp-v2 pod
//	any other Host      -> 404 from the default server
//
// Mode 2 (ingress-nodeport): the controller Deployment behind the
// NodePort Service, reached as NODE_IP:nodePort on every node through the
// node's datapath. Mode 3 (ingress-hostnetwork): the seed's DaemonSet
// edit after `label node node1 isIngress="true"`: nginx binds node1's own
// port 80; node2 has nothing there. Mode 1 (a LoadBalancer Service) waits
// for the load-balancer add-on.

// ingressConverge bounds how long a change of Ingresses may take to show in
// nginx's answers (render, nginx -t, reload, new workers): the controller
// waits Settle (50 ms) and then reloads; on this busy 2-core host a reload
// takes well under a second.
const ingressConverge = 20 * time.Second

// seedIngressFiles are the seed's manifests the Ingress needs.
var seedIngressFiles = []string{"00-getip.yaml", "02-myhttp-v2.yaml", "03-myhttp-service.yaml", "06-ingress-http.yaml"}

// ingressNeeds is the Ingress scenarios' precondition: nginx installed
// and ingress-nginx's published manifests found. Without either they
// skip, saying which and how to get it (never a pass).
func ingressNeeds() string {
	if _, err := ingress.Binary(); err != nil {
		return err.Error()
	}
	return seeddir.Missing()
}

// ingressOptions are the options of every Ingress scenario: a cluster of
// its own (the controller's namespace is deleted, node1 labelled) and
// ingressNeeds.
var ingressOptions = harness.Options{OwnsCluster: true, Needs: ingressNeeds}

func applySeedIngress(h *harness.H) {
	h.T.Helper()
	applySeedFiles(h, seedIngressFiles...)
}

// applySeedFiles applies files of sim/testdata/seed, found beside this
// source file rather than from the working directory (the kernel lane runs
// the test binary from another one).
func applySeedFiles(h *harness.H, files ...string) {
	h.T.Helper()
	_, src, _, ok := runtime.Caller(0)
	if !ok {
		h.Fatalf("no source path to find sim/testdata/seed from")
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(filepath.Dir(src), "..", "sim", "testdata", "seed", f))
	}
	h.ApplyFiles(paths...)
}

// hostGet sends `curl -H Host:host http://addr/path` from the external
// namespace and returns the status code and body.
func hostGet(h *harness.H, ext *harness.Client, addr, host, path string) (int, string, error) {
	out, err := ext.Exec(h.Ctx, "curl", "-sS", "--max-time", "3", "-H", "Host: "+host, "-w", "\n%{http_code}", "http://"+addr+path)
	if err != nil {
		return 0, out, err
	}
	i := strings.LastIndex(out, "\n")
	code, _ := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	return code, out[:i], nil
}

// answeredBy parses a getip /info answer and returns the pod IP.
func answeredBy(body string) string {
	var in harness.Info
	if json.Unmarshal([]byte(body), &in) != nil || in.Msg != "success" {
		return ""
	}
	return in.IP()
}

// waitIngress polls (bounded in count and time) until addr answers host's
// path from one of backends three times in a row, and returns how long
// the first of those took to come. In a row: while nginx reloads, old
// workers still take connections on the old configuration until they
// have closed their listening sockets, so one answer alone can come from
// either.
func waitIngress(h *harness.H, ext *harness.Client, addr, host string, backends map[string]string) (time.Duration, error) {
	start := time.Now()
	var last string
	var first time.Duration
	good := 0
	for i := 0; i < 400 && time.Since(start) < ingressConverge; i++ {
		code, body, err := hostGet(h, ext, addr, host, "/info")
		if err == nil && code == 200 && backends[answeredBy(body)] != "" {
			if good == 0 {
				first = time.Since(start)
			}
			if good++; good == 3 {
				return first, nil
			}
			continue
		}
		good = 0
		last = fmt.Sprintf("%d %q %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("%s Host %s: no answer from %v within %v: last %s", addr, host, backends, ingressConverge, last)
}

// checkSeedRouting sends the seed's three requests to addr.
func checkSeedRouting(h *harness.H, ext *harness.Client, addr, where string) {
	h.T.Helper()
	getip, myhttp := podIPs(h, h.NS, "getip-deployment-"), podIPs(h, h.NS, "myhttp-v2-")
	took, err := waitIngress(h, ext, addr, "www.tabops.com", getip)
	h.Check(err == nil, "www.tabops.com -> getip via "+where, "%v (after %v)", err, took.Round(time.Millisecond))
	h.Figure("first answer via "+where, took.Seconds(), "s")
	took, err = waitIngress(h, ext, addr, "www.pdd.com", myhttp)
	h.Check(err == nil, "www.pdd.com answers via "+where, "%v (after %v)", err, took.Round(time.Millisecond))
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		code, body, err := hostGet(h, ext, addr, "www.pdd.com", "/info")
		ip := answeredBy(body)
		if err != nil || code != 200 || myhttp[ip] == "" {
			h.Fatalf("Host www.pdd.com via %s: %d %q %v: not a myhttp-v2 pod (%v)", where, code, body, err, myhttp)
		}
		seen[ip] = true
	}
	h.Check(true, "www.pdd.com -> myhttp via "+where, "10 answers from %d of %d myhttp-v2 pods", len(seen), len(myhttp))
	code, body, err := hostGet(h, ext, addr, "unknown.example", "/info")
	h.Check(err == nil && code == 404, "unknown host 404 via "+where, "%d %q %v", code, body, err)
}

// ingressStatus returns the seed Ingress's status addresses.
func ingressStatus(h *harness.H) string {
	o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "ingress", Namespace: h.NS, Name: "ingress-http"})
	if err != nil {
		h.Fatalf("get ingress: %v", err)
	}
	var ips []string
	for _, in := range o.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
		ips = append(ips, in.IP+in.Hostname)
	}
	return strings.Join(ips, ",")
}

// waitStatus waits (bounded) until the Ingress's ADDRESS is want.
func waitStatus(h *harness.H, want string) string {
	var got string
	for i := 0; i < 100; i++ {
		if got = ingressStatus(h); got == want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return got
}

// runDir is this scenario's run directory (its workloads' directories
// are below it): other runs on the host (another test binary, a user's
// svcsim up) have their own and are none of this scenario's business.
func runDir(h *harness.H) string {
	return filepath.Join(rundir.Root(), h.P.Info().RunID)
}

// controllerFiles lists what of an ingress-nginx controller's workload
// directory this run still has below it (pattern "" for the directories).
func controllerFiles(h *harness.H, pattern string) []string {
	m, _ := filepath.Glob(filepath.Join(runDir(h), "workloads", "ingress-nginx_*", pattern))
	return m
}

// nginxProcesses lists this run's nginx processes (masters started on a
// configuration below dir, and their workers) and every nginx process in
// the host's own network namespace, whoever started it (there must be
// none: svcsim's nginx runs only in its namespaces, and a host's own
// nginx must not be started by make deps).
func nginxProcesses(dir string) (ours []int, inHostNetns []int) {
	self, _ := os.Readlink("/proc/self/ns/net")
	cmdline := func(pid string) string {
		b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		return strings.ReplaceAll(string(b), "\x00", " ")
	}
	ppid := func(pid string) string {
		b, _ := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		// pid (comm) state ppid ...: comm may hold spaces, so after ")".
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 {
			return ""
		}
		return f[1]
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "nginx" {
			continue
		}
		if strings.Contains(cmdline(e.Name()), dir+"/") || strings.Contains(cmdline(ppid(e.Name())), dir+"/") {
			ours = append(ours, pid)
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && ns == self {
			inHostNetns = append(inHostNetns, pid)
		}
	}
	return ours, inHostNetns
}

// removeController deletes the ingress-nginx namespace and checks that the
// controller left nothing: no nginx process of this run, no listener on
// port 80 where it ran, no workload directory (nginx.conf, pid file,
// certificates, temp files).
func removeController(h *harness.H, listenNS *harness.Client, addr string) {
	h.T.Helper()
	before, _ := nginxProcesses(runDir(h))
	h.Check(len(before) > 0, "this run's nginx processes are found", "%d with their configuration below %s", len(before), runDir(h))
	if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "namespace", Name: "ingress-nginx"}); err != nil {
		h.Fatalf("delete namespace ingress-nginx: %v", err)
	}
	h.Programmed()
	var left []int
	var dirs []string
	for i := 0; i < 100; i++ {
		left = left[:0]
		for _, pid := range before {
			if syscall.Kill(pid, 0) == nil {
				left = append(left, pid)
			}
		}
		if dirs = controllerFiles(h, ""); len(left) == 0 && len(dirs) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.Check(len(left) == 0, "no nginx process after the controller goes", "still running: %v", left)
	out, err := listenNS.Exec(h.Ctx, "ss", "-Hltn", "sport = :80")
	h.Check(err == nil && strings.TrimSpace(out) == "", "nothing listens on :80 after the controller goes", "ss: %q %v", out, err)
	out, err = external(h).Exec(h.Ctx, "curl", "-sS", "--max-time", "2", "http://"+addr+"/")
	h.Check(err != nil, "the ingress address refuses after the controller goes", "curl: %q", out)
	h.Check(len(dirs) == 0, "no controller directory left (nginx.conf, pid, certificates)", "%v", dirs)
}

// TestIngressNodePort: deployment mode 2, through every datapath.
func TestIngressNodePort(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-nodeport", Title: "Ingress: ingress-nginx Deployment behind a NodePort (seed mode 2)", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		mandatory := seeddir.WithTag(seeddir.Read(h.T, "mandatory.yaml"), "0.28.0")
		h.Apply(string(mandatory), string(seeddir.Read(h.T, "service-nodeport.yaml")))
		applySeedIngress(h)
		np := nodePort(h, "ingress-nginx", "ingress-nginx")
		ext := external(h)
		for _, n := range h.P.Nodes() {
			checkSeedRouting(h, ext, fmt.Sprintf("%s:%d", n.IP, np), n.Name+" nodePort")
		}
		_, inHost := nginxProcesses(runDir(h))
		h.Check(len(inHost) == 0, "no nginx in the host's network namespace", "pids %v", inHost)
		cip := service(h, "ingress-nginx", "ingress-nginx").Spec.ClusterIP
		got := waitStatus(h, cip)
		h.Check(got == cip, "ADDRESS is the controller Service's ClusterIP", "status %q, want %q", got, cip)
		n1 := h.P.Nodes()[0]
		removeController(h, harness.NewClient(n1.Name, n1.NS), fmt.Sprintf("%s:%d", n1.IP, np))
	})
}

// TestIngressHostNetwork: deployment mode 3, the seed's DaemonSet edit.
func TestIngressHostNetwork(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-hostnetwork", Title: "Ingress: ingress-nginx DaemonSet on hostNetwork, node1 only (seed mode 3)", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		if err := h.P.Label(h.Ctx, plane.Ref{Kind: "node", Name: "node1"}, map[string]string{"isIngress": "true"}); err != nil {
			h.Fatalf("label node1: %v", err)
		}
		h.Apply(string(seeddir.DaemonSetMode(seeddir.WithTag(seeddir.Read(h.T, "mandatory.yaml"), "0.28.0"))))
		applySeedIngress(h)
		ext := external(h)
		nodes := h.P.Nodes()
		checkSeedRouting(h, ext, nodes[0].IP.String()+":80", "node1:80")
		out, err := ext.Exec(h.Ctx, "curl", "-sS", "--max-time", "2", "-H", "Host: www.tabops.com", "http://"+nodes[1].IP.String()+"/info")
		h.Check(err != nil && strings.Contains(out, "curl: (7)"), "nothing on node2:80 (connection refused)", "curl node2: %q %v", out, err)
		_, inHost := nginxProcesses(runDir(h))
		h.Check(len(inHost) == 0, "no nginx in the host's network namespace", "pids %v", inHost)
		// The seed shows no ADDRESS in mode 3: --publish-service names
		// ingress-nginx/ingress-nginx, which this mode does not create.
		got := waitStatus(h, "")
		h.Check(got == "", "ADDRESS empty as in the seed (no publish Service)", "status %q", got)
		removeController(h, harness.NewClient(nodes[0].Name, nodes[0].NS), nodes[0].IP.String()+":80")
	})
}
