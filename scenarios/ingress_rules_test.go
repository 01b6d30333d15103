package scenarios

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/sim/seeddir"
	"github.com/svcsim/svcsim/topology"
)

// Ingress rule semantics, each as requests and the backend or status they
// must get. The controller runs as in the seed's mode 3 (the DaemonSet on
// node1's own ports), so nothing but nginx decides where a request goes;
// the backends are the seed's getip-service (pods getip-deployment-*) and
// myhttp-service (pods myhttp-v2-*). Every backend pod names itself in an
// X-Pod header (namespace/name), also on its own 404s, so an answer from a pod and nginx's
// own 404 (no X-Pod) are told apart.

// The answering side of a request.
const (
	viaGetip  = "getip"  // a getip-deployment pod
	viaMyhttp = "myhttp" // a myhttp-v2 pod
	viaNginx  = "nginx"  // nginx itself (no X-Pod header)
)

// routed is what one request got.
type routed struct {
	code     int
	via      string
	location string
	err      error
}

func (r routed) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	s := fmt.Sprintf("%d from %s", r.code, r.via)
	if r.location != "" {
		s += " to " + r.location
	}
	return s
}

// noRedirects is a client from ns that reports redirects instead of
// following them.
func noRedirects(ns *harness.Client) *http.Client {
	hc := topology.HTTPClient(ns.NS, false, 3*time.Second)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc
}

// route sends GET http://addr+path with Host host and says who answered.
func route(h *harness.H, hc *http.Client, addr, host, path string) routed {
	req, err := http.NewRequestWithContext(h.Ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return routed{err: err}
	}
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return routed{err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r := routed{code: resp.StatusCode, via: viaNginx, location: resp.Header.Get("Location")}
	pod := resp.Header.Get("X-Pod") // namespace/name
	pod = pod[strings.LastIndex(pod, "/")+1:]
	switch {
	case strings.HasPrefix(pod, "getip-deployment-"):
		r.via = viaGetip
	case strings.HasPrefix(pod, "myhttp-v2-"):
		r.via = viaMyhttp
	case pod != "":
		r.via = pod
	}
	return r
}

// routeCase is one request and what it must get.
type routeCase struct {
	host, path string
	code       int
	via        string
	location   string // a redirect's Location, "" for none
	why        string
}

func (c routeCase) want() routed { return routed{code: c.code, via: c.via, location: c.location} }

// checkRoutes waits (bounded by ingressConverge) until every case answers
// as it must twice in a row (a reload's old workers may answer a request
// or two on the previous configuration), then records each case; it
// returns how long the wait took.
func checkRoutes(h *harness.H, hc *http.Client, addr, what string, cases []routeCase) time.Duration {
	h.T.Helper()
	start := time.Now()
	got := make([]routed, len(cases))
	inRow := 0
	for time.Since(start) < ingressConverge && inRow < 2 {
		all := true
		for i, c := range cases {
			got[i] = route(h, hc, addr, c.host, c.path)
			all = all && got[i].String() == c.want().String()
		}
		if all {
			inRow++
			continue
		}
		inRow = 0
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	for i, c := range cases {
		h.Check(got[i].String() == c.want().String(), fmt.Sprintf("%s: Host %s GET %s", what, c.host, c.path),
			"%s (want %s: %s)", got[i], c.want(), c.why)
	}
	return took
}

// keepNginxOnFailure logs every controller's nginx.conf and error.log of
// this run when the scenario fails (before the cluster goes with them).
func keepNginxOnFailure(h *harness.H) {
	h.T.Cleanup(func() {
		if !h.T.Failed() {
			return
		}
		for _, c := range controllerFiles(h, "nginx.conf") {
			conf, _ := os.ReadFile(c)
			errs, _ := os.ReadFile(filepath.Join(filepath.Dir(c), "error.log"))
			h.T.Logf("%s:\n%s\nerror.log:\n%s", c, conf, errs)
		}
	})
}

// ingressOnNode1 starts the seed's mode 3 controller on node1 and the
// seed's two backends (not its Ingress), and returns node1's address.
func ingressOnNode1(h *harness.H) string {
	h.T.Helper()
	keepNginxOnFailure(h)
	if err := h.P.Label(h.Ctx, plane.Ref{Kind: "node", Name: "node1"}, map[string]string{"isIngress": "true"}); err != nil {
		h.Fatalf("label node1: %v", err)
	}
	h.Apply(string(seeddir.DaemonSetMode(seeddir.WithTag(seeddir.Read(h.T, "mandatory.yaml"), "0.28.0"))))
	applySeedFiles(h, "00-getip.yaml", "02-myhttp-v2.yaml", "03-myhttp-service.yaml")
	return h.P.Nodes()[0].IP.String()
}

// ingressYAML is a networking.k8s.io/v1 Ingress of class nginx (by the
// seed's annotation) with extra annotations and the rules' YAML.
func ingressYAML(name string, annotations map[string]string, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  annotations:\n    kubernetes.io/ingress.class: nginx\n", name)
	for k, v := range annotations {
		fmt.Fprintf(&b, "    %s: %q\n", k, v)
	}
	b.WriteString("spec:\n" + spec)
	return b.String()
}

// pathRule is one rule's YAML: host and (path, pathType, service) triples.
func pathRule(host string, paths ...[3]string) string {
	s := fmt.Sprintf("  - host: %s\n    http:\n      paths:\n", host)
	for _, p := range paths {
		s += fmt.Sprintf("      - path: %q\n        pathType: %s\n        backend:\n          service:\n            name: %s\n            port:\n              number: 80\n", p[0], p[1], p[2])
	}
	return s
}

// TestIngressPaths: path semantics as ingress-nginx has them.
//
//	paths.test    Prefix /foo -> getip, Prefix /foo/bar -> myhttp, Exact /exact -> myhttp,
//	              ImplementationSpecific /impl -> getip and /dir/ -> myhttp
//	regex.test    use-regex: /v[0-9]+/ -> getip, /v1/special -> myhttp (longest first)
//	rewrite.test  use-regex + rewrite-target /$2: /api(/|$)(.*) -> getip
//	regex.test    another Ingress without use-regex: /w[0-9] -> myhttp, an expression too
//	evil*.test    a directive in rewrite-target, a directive in a path: refused, 404
//	other hosts   nginx's 404; then an Ingress's defaultBackend (myhttp) answers them
func TestIngressPaths(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-paths", Title: "Ingress: Exact, Prefix (element-wise), ImplementationSpecific, regex, rewrite-target, default backend", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		addr := ingressOnNode1(h)
		h.Apply(
			ingressYAML("paths", nil, "  rules:\n"+pathRule("paths.test",
				[3]string{"/foo", "Prefix", "getip-service"},
				[3]string{"/foo/bar", "Prefix", "myhttp-service"},
				[3]string{"/exact", "Exact", "myhttp-service"},
				[3]string{"/impl", "ImplementationSpecific", "getip-service"},
				[3]string{"/dir/", "ImplementationSpecific", "myhttp-service"})),
			ingressYAML("regex", map[string]string{"nginx.ingress.kubernetes.io/use-regex": "true"}, "  rules:\n"+pathRule("regex.test",
				[3]string{"/v[0-9]+/", "ImplementationSpecific", "getip-service"},
				[3]string{"/v1/special", "ImplementationSpecific", "myhttp-service"})),
			ingressYAML("rewrite", map[string]string{"nginx.ingress.kubernetes.io/use-regex": "true", "nginx.ingress.kubernetes.io/rewrite-target": "/$2"}, "  rules:\n"+pathRule("rewrite.test",
				[3]string{"/api(/|$)(.*)", "ImplementationSpecific", "getip-service"})),
		)
		hc := noRedirects(external(h))
		took := checkRoutes(h, hc, addr, "paths", []routeCase{
			{"paths.test", "/foo", 404, viaGetip, "", "Prefix /foo matches the path itself (the pod has no such page)"},
			{"paths.test", "/foo/", 404, viaGetip, "", "Prefix /foo matches /foo/"},
			{"paths.test", "/foo/info", 404, viaGetip, "", "Prefix /foo matches below it"},
			{"paths.test", "/foobar", 404, viaNginx, "", "Prefix is element-wise: /foo does not match /foobar"},
			{"paths.test", "/foo/bar", 404, viaMyhttp, "", "the longest matching Prefix wins"},
			{"paths.test", "/foo/bar/x", 404, viaMyhttp, "", "Prefix /foo/bar matches below it"},
			{"paths.test", "/foo/barbaz", 404, viaGetip, "", "/foo/barbaz is not under /foo/bar: back to /foo"},
			{"paths.test", "/exact", 404, viaMyhttp, "", "Exact matches the path"},
			{"paths.test", "/exact/", 404, viaNginx, "", "Exact matches nothing else"},
			{"paths.test", "/exactly", 404, viaNginx, "", "Exact is no prefix"},
			{"paths.test", "/impl", 404, viaGetip, "", "ImplementationSpecific is nginx's prefix match"},
			{"paths.test", "/implx", 404, viaGetip, "", "ImplementationSpecific /impl matches /implx (nginx's plain prefix)"},
			{"paths.test", "/dir", 301, viaNginx, "http://paths.test/dir/", "a plain prefix ending in / redirects the path without it"},
			{"paths.test", "/dir/info", 404, viaMyhttp, "", "below /dir/"},
			{"paths.test", "/", 404, viaNginx, "", "no rule for / on the host: the default 404"},
			{"regex.test", "/v2/x", 404, viaGetip, "", "regular expression /v[0-9]+/"},
			{"regex.test", "/v1/special/info", 404, viaMyhttp, "", "the longer expression is tried first"},
			{"regex.test", "/V1/SPECIAL", 404, viaMyhttp, "", "use-regex matches case-insensitively"},
			{"regex.test", "/v1/other", 404, viaGetip, "", "/v1/special does not match: /v[0-9]+/"},
			{"regex.test", "/x/v1/special", 404, viaNginx, "", "expressions are anchored at the start"},
			{"rewrite.test", "/api/info", 200, viaGetip, "", "rewritten to /info (the pod answers only /info)"},
			{"rewrite.test", "/API/info", 200, viaGetip, "", "case-insensitive, rewritten"},
			{"rewrite.test", "/api", 200, viaGetip, "", "rewritten to / (the pod answers its name)"},
			{"rewrite.test", "/apiinfo", 404, viaNginx, "", "(/|$) does not match 'i'"},
			{"unknown.test", "/info", 404, viaNginx, "", "no server for the host: the default server's 404"},
		})
		h.Figure("paths in effect after apply", took.Seconds(), "s")

		// use-regex holds for every path of the host, across its
		// Ingresses: one without the annotation adds an expression.
		// Hostile values (IngressNightmare's way in: a directive in an
		// annotation or a path) are refused by the controller, and the
		// rest of the configuration is served on.
		h.Apply(
			ingressYAML("regex-more", nil, "  rules:\n"+pathRule("regex.test", [3]string{"/w[0-9]", "ImplementationSpecific", "myhttp-service"})),
			ingressYAML("evil-annotation", map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/ last; } location /pwned { return 200 pwned; } location /x { rewrite ^ /"}, "  rules:\n"+pathRule("evil.test", [3]string{"/", "Prefix", "getip-service"})),
			ingressYAML("evil-path", nil, "  rules:\n"+pathRule("evil2.test", [3]string{"/x { return 200 pwned; } location /y", "ImplementationSpecific", "getip-service"})),
		)
		checkRoutes(h, hc, addr, "across Ingresses and hostile", []routeCase{
			{"regex.test", "/w7", 404, viaMyhttp, "", "another Ingress's path on a use-regex host is an expression too"},
			{"regex.test", "/v2/x", 404, viaGetip, "", "the first Ingress's expressions still hold"},
			{"evil.test", "/", 404, viaNginx, "", "an Ingress with a directive in rewrite-target is left out whole"},
			{"evil.test", "/pwned", 404, viaNginx, "", "no injected location"},
			{"evil2.test", "/x", 404, viaNginx, "", "a path holding a directive is left out"},
			{"evil2.test", "/pwned", 404, viaNginx, "", "no injected location"},
			{"paths.test", "/foo", 404, viaGetip, "", "everything else is still served"},
		})

		h.Apply(ingressYAML("fallback", nil, "  defaultBackend:\n    service:\n      name: myhttp-service\n      port:\n        number: 80\n"))
		checkRoutes(h, hc, addr, "defaultBackend", []routeCase{
			{"unknown.test", "/info", 200, viaMyhttp, "", "an Ingress's defaultBackend takes the hosts no rule has"},
			{"paths.test", "/foo", 404, viaGetip, "", "rules keep their backends"},
		})
		if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "ingress", Namespace: h.NS, Name: "fallback"}); err != nil {
			h.Fatalf("delete ingress fallback: %v", err)
		}
		h.Programmed()
		checkRoutes(h, hc, addr, "defaultBackend deleted", []routeCase{
			{"unknown.test", "/info", 404, viaNginx, "", "the default server's 404 again"},
		})
		n1 := h.P.Nodes()[0]
		removeController(h, harness.NewClient(n1.Name, n1.NS), addr+":80")
	})
}
