package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/svcsim/svcsim/addons/clusterdns"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/kubelet"
	"github.com/svcsim/svcsim/topology"
)

// CoreDNSImage is the kube-dns Deployment's image: its pods run the genuine
// CoreDNS of the multi-call binary.
const CoreDNSImage = "registry.k8s.io/coredns/coredns:v1.15.0"

// coreDNSUser is the kube-dns pods' ServiceAccount as a user name: RBAC
// matches a ServiceAccount subject by that name, so a client certificate
// for it gets the system:coredns ClusterRole.
const coreDNSUser = "system:serviceaccount:kube-system:coredns"

// kubeDNSManifests are kubeadm's CoreDNS objects with what the genuine
// CoreDNS needs (its ServiceAccount and RBAC to list and watch, the metrics
// port, a readiness probe) and the kube-dns Service at plane.DNSServiceIP,
// without the Corefile ConfigMap: the kubelet's workload writes
// kube.Corefile (no forward).
var kubeDNSManifests = clusterdns.KubeDNS{Image: CoreDNSImage, ServiceIP: plane.DNSServiceIP, Genuine: true}.Manifests()

// coreDNSWorkload runs the genuine CoreDNS in a kube-dns pod's namespace
// with the kube-dns Corefile; it returns once CoreDNS's ready plugin says
// it has synced with the API server.
func (c *Cluster) coreDNSWorkload() kubelet.Workload {
	return kubelet.Workload{
		Name:   kube.CoreDNS,
		Serves: []topology.Port{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP"}, {Port: 9153, Protocol: "TCP"}, {Port: 8080, Protocol: "TCP"}, {Port: 8181, Protocol: "TCP"}},
		Start: func(ctx context.Context, ct kubelet.Container) (kubelet.Instance, error) {
			dir := filepath.Join(c.cp.Dir(), "coredns", ct.Pod.Namespace+"_"+ct.Pod.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("coredns: %w", err)
			}
			kc, err := c.cp.Kubeconfig(coreDNSUser)
			if err != nil {
				return nil, err
			}
			conf := filepath.Join(dir, "Corefile")
			corefile := kube.Corefile(kube.CorefileOptions{Kubeconfig: kc, HealthAddr: ":8080", ReadyAddr: ":8181"})
			if err := os.WriteFile(conf, []byte(corefile), 0o600); err != nil {
				return nil, fmt.Errorf("coredns: %w", err)
			}
			ns := ct.Sandbox.Netns()
			p, err := c.cp.StartProcess(ns, kube.CoreDNS, []string{"-conf", conf}, kube.ProcessOptions{LogName: "coredns-" + ct.Pod.Name, Dir: dir})
			if err != nil {
				return nil, err
			}
			hc := topology.HTTPClient(ns, false, time.Second)
			defer hc.CloseIdleConnections()
			err = poll(ctx, 50*time.Millisecond, "CoreDNS ready", func() (bool, string, error) {
				select {
				case <-p.Done():
					return false, "", fmt.Errorf("coredns exited: %v", p.Err())
				default:
				}
				resp, err := hc.Get("http://127.0.0.1:8181/ready")
				if err != nil {
					return false, err.Error(), nil
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK, resp.Status, nil
			})
			if err != nil {
				_ = p.Stop(time.Second)
				return nil, fmt.Errorf("%w; log %s", err, p.Log)
			}
			return coreDNS{p}, nil
		},
	}
}

type coreDNS struct{ p *kube.Process }

// Stop waits out the health plugin's 5 s lameduck.
func (d coreDNS) Stop() error { return d.p.Stop(8 * time.Second) }
