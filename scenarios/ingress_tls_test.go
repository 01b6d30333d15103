package scenarios

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// selfSigned returns a fresh self-signed certificate for host (and more
// names; its own CA) and its key, PEM-encoded, valid for an hour.
func selfSigned(host string, more ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"svcsim ingress-tls scenario"}},
		DNSNames:              append([]string{host}, more...),
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// curlTLS runs curl from the external namespace against https://host/info
// on addr:443 (--resolve: the name goes out as SNI and Host) with extra
// flags, and returns the status code and curl's exit code (0: a complete
// answer).
func curlTLS(h *harness.H, ext *harness.Client, addr, host string, extra ...string) (code int, exit string, out string) {
	args := append([]string{"-sS", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", host + ":443:" + addr}, extra...)
	args = append(args, "https://"+host+"/info")
	out, err := ext.Exec(h.Ctx, "curl", args...)
	exit = "0"
	if err != nil {
		exit = err.Error()
	}
	fmt.Sscanf(strings.TrimSpace(lastLine(out)), "%d", &code)
	return code, exit, out
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// TestIngressTLS: a tls section with a Secret holding a certificate the
// test generates serves HTTPS on node1:443 for that host (mode 3); the
// certificate checks against itself as the only CA (curl --cacert), not
// without it; plain HTTP for the host is redirected to https (ssl-redirect,
// on by default), not with ssl-redirect "false"; a name no server has gets
// no TLS handshake at all.
func TestIngressTLS(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-tls", Title: "Ingress: TLS from a Secret (SNI, curl --cacert), ssl-redirect", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		const host = "secure.test"
		crt, key, err := selfSigned(host)
		if err != nil {
			h.Fatalf("certificate: %v", err)
		}
		ca := filepath.Join(h.T.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, crt, 0o644); err != nil {
			h.Fatalf("write %s: %v", ca, err)
		}
		addr := ingressOnNode1(h)
		h.Apply(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: secure-tls\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
			base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(key)),
			ingressYAML("secure", nil, "  tls:\n  - hosts: [\""+host+"\"]\n    secretName: secure-tls\n  rules:\n"+pathRule(host, [3]string{"/", "Prefix", "getip-service"})),
			ingressYAML("plain", map[string]string{"nginx.ingress.kubernetes.io/ssl-redirect": "false"}, "  tls:\n  - hosts: [\"plain.test\"]\n    secretName: secure-tls\n  rules:\n"+pathRule("plain.test", [3]string{"/", "Prefix", "myhttp-service"})))
		ext := external(h)
		var code int
		var exit, out string
		// Three in a row: while nginx reloads, old workers still take
		// connections on the old configuration (no such server: the
		// handshake is refused).
		start := time.Now()
		for i, good := 0, 0; i < 200 && good < 3 && time.Since(start) < ingressConverge; i++ {
			if code, exit, out = curlTLS(h, ext, addr, host, "--cacert", ca); code == 200 && exit == "0" {
				good++
				continue
			}
			good = 0
			time.Sleep(100 * time.Millisecond)
		}
		h.Check(code == 200 && exit == "0", "https://"+host+"/info verified with --cacert", "%d, curl %s: %q", code, exit, out)
		h.Figure("TLS host served after apply", time.Since(start).Seconds(), "s")
		body, err := ext.Exec(h.Ctx, "curl", "-sS", "--max-time", "3", "--cacert", ca, "--resolve", host+":443:"+addr, "https://"+host+"/info")
		getip := podIPs(h, h.NS, "getip-deployment-")
		h.Check(err == nil && getip[answeredBy(body)] != "", "the answer over TLS is a getip pod's", "%q %v", body, err)
		code, exit, out = curlTLS(h, ext, addr, host)
		h.Check(code == 0 && strings.Contains(out, "curl: (60)"), "without --cacert the self-signed certificate is refused", "%d, curl %s: %q", code, exit, out)

		hc := noRedirects(ext)
		r := route(h, hc, addr, host, "/info")
		h.Check(r.code == 308 && r.location == "https://"+host+"/info", "plain HTTP to the TLS host is redirected (ssl-redirect)", "%s", r)
		r = route(h, hc, addr, "plain.test", "/info")
		h.Check(r.code == 200 && r.via == viaMyhttp, "ssl-redirect \"false\": plain HTTP is served", "%s", r)
		code, exit, out = curlTLS(h, ext, addr, "plain.test", "--cacert", ca, "-k")
		h.Check(code == 200, "plain.test over TLS too (the same Secret; -k: the certificate names secure.test)", "%d, curl %s: %q", code, exit, out)

		code, exit, out = curlTLS(h, ext, addr, "unknown.test", "-k")
		h.Check(code == 0 && exit != "0" && (strings.Contains(out, "curl: (35)") || strings.Contains(out, "alert")), "a name no server has gets no TLS handshake", "%d, curl %s: %q", code, exit, out)
		n1 := h.P.Nodes()[0]
		removeController(h, harness.NewClient(n1.Name, n1.NS), addr+":80")
	})
}
