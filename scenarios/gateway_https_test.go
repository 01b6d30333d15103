package scenarios

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/addons/gateway"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// TestGatewayHTTPS mirrors HTTPRouteHTTPSListener: the suite's
// same-namespace-with-https-listener Gateway (four HTTPS listeners on 443,
// one certificate from a kubernetes.io/tls Secret, generated here), a
// route with hostname example.org on the listener without a hostname and
// one without hostnames on the second-example.org listener: each name
// answers over TLS with SNI (the certificate verified against the test's
// CA) from its backend; another name gets the certificate of the listener
// without a hostname, which the client refuses for that name.
func TestGatewayHTTPS(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-https", Title: "Gateway API: HTTPS listeners with certificateRefs (SNI)", Group: results.GroupGateway}
	harness.Run(t, sc, gatewayOptions, func(h *harness.H) {
		certPEM, keyPEM, err := selfSigned("example.org", "second-example.org", "*.wildcard.org")
		if err != nil {
			h.Fatalf("certificate: %v", err)
		}
		secret := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: tls-validity-checks-certificate}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
			base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM))
		ref := "tls: {certificateRefs: [{group: \"\", kind: Secret, name: tls-validity-checks-certificate}]}"
		installGateway(h, secret, echoBackends("infra-backend-v1", "infra-backend-v2"),
			gatewayDoc("same-namespace-with-https-listener",
				"{name: https, port: 443, protocol: HTTPS, "+ref+"}",
				"{name: https-with-hostname, port: 443, hostname: second-example.org, protocol: HTTPS, "+ref+"}",
				"{name: https-with-wildcard-hostname, port: 443, hostname: \"*.wildcard.org\", protocol: HTTPS, "+ref+"}",
				"{name: https-with-hostname-matching-wildcard, port: 443, hostname: fourth-example.wildcard.org, protocol: HTTPS, "+ref+"}"),
			`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-https-test}
spec:
  parentRefs: [{name: same-namespace-with-https-listener}]
  hostnames: [example.org]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-https-test-no-hostname}
spec:
  parentRefs: [{name: same-namespace-with-https-listener, sectionName: https-with-hostname}]
  rules:
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
`)
		addr := waitGatewayAddress(h, h.NS, "same-namespace-with-https-listener")
		for _, r := range []string{"httproute-https-test", "httproute-https-test-no-hostname"} {
			reason, ok := routeCondition(h, h.NS, r, "Accepted", metav1.ConditionTrue)
			h.Check(ok, "HTTPRouteHTTPSListener: "+r+" Accepted", "%s", reason)
		}
		g := getGateway(h, h.NS, "same-namespace-with-https-listener")
		resolved := 0
		for _, l := range g.Status.Listeners {
			for _, c := range l.Conditions {
				if c.Type == "ResolvedRefs" && c.Status == metav1.ConditionTrue {
					resolved++
				}
			}
		}
		h.Check(resolved == 4, "HTTPRouteHTTPSListener: every listener's certificateRef resolves", "%d of 4", resolved)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certPEM)
		ns := external(h).NS
		get := func(host string) (int, gateway.EchoReply, error) {
			tr := &http.Transport{
				DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					return topology.DialContext(ctx, ns, network, net.JoinHostPort(addr, "443"))
				},
				TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host}, DisableKeepAlives: true, Proxy: nil,
			}
			c := &http.Client{Transport: tr, Timeout: 3 * time.Second}
			resp, err := c.Get("https://" + host + "/")
			if err != nil {
				return 0, gateway.EchoReply{}, err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			var e gateway.EchoReply
			_ = json.Unmarshal(b, &e)
			return resp.StatusCode, e, nil
		}
		for _, tc := range []struct{ host, backend string }{{"example.org", "infra-backend-v1"}, {"second-example.org", "infra-backend-v2"}} {
			var last string
			good := 0
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && good < 3; {
				code, e, err := get(tc.host)
				if err == nil && code == 200 && len(e.Pod) > len(tc.backend) && e.Pod[:len(tc.backend)+1] == tc.backend+"-" {
					good++
					continue
				}
				good, last = 0, fmt.Sprintf("%d %q %v", code, e.Pod, err)
				time.Sleep(50 * time.Millisecond)
			}
			h.Check(good >= 3, "HTTPRouteHTTPSListener: https://"+tc.host+"/ (SNI, verified) -> "+tc.backend, "%s", last)
		}
		_, _, err = get("unknown.example.net")
		h.Check(err != nil && strings.Contains(err.Error(), "certificate is valid for example.org"),
			"another name gets the hostname-less listener's certificate (not valid for it: refused)", "%v", err)
	})
}
