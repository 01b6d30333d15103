package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology/topotest"
)

// kubeLoopEnv, set to 1, runs TestKubeProxyPatchLoop: it builds the whole
// multi-call binary a second time from a copied tree, minutes and about
// 3 GB, so `make test` leaves it out; `make test-kube-loop` runs it.
const kubeLoopEnv = "SVCSIM_KUBE_LOOP"

// The patch the loop test applies to kube-proxy: a changed rule comment of
// the iptables proxier (pkg/proxy/iptables/proxier.go, the jump to
// KUBE-NODEPORTS, written once per IP family branch).
const (
	loopPatchFile = "pkg/proxy/iptables/proxier.go"
	loopOld       = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
	loopNew       = "kubernetes service nodeports patched by the svcsim loop test"
)

// loopObjects: a NodePort Service over one pod.
var loopObjects = plane.Text("loop", `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - port: 80
      nodePort: 30601
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
    - name: getip
      image: getip
      ports:
        - containerPort: 80
`)

// TestKubeProxyPatchLoop is the kube-proxy developer's loop without a
// kubernetes checkout: the pinned k8s.io/kubernetes module and its staging
// modules are copied from the module cache into a temporary tree laid out
// as a checkout (staging/src/k8s.io/<name>), one rule comment of the
// iptables proxier is changed there, upstream/local-build.sh (what
// `KUBERNETES_SRC=... make kube` runs) builds the multi-call binary from
// it, and kube-proxy-diff against the pinned bin/k8s must show exactly that
// comment changed on kube-proxy/iptables-nft, and nothing on
// kube-proxy/nftables, which the patch does not touch.
func TestKubeProxyPatchLoop(t *testing.T) {
	if os.Getenv(kubeLoopEnv) != "1" {
		t.Skipf("builds bin/k8s again from a patched tree (minutes, ~3 GB): %s=1 (make test-kube-loop) runs it", kubeLoopEnv)
	}
	topotest.RequireRoot(t)
	pinned, _, err := kube.FindBinary()
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := filepath.Abs(filepath.Join("..", "..", "upstream"))
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "kubernetes")
	version := copyPinnedTree(t, upstream, tree)
	b, err := os.ReadFile(filepath.Join(tree, loopPatchFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), loopOld); n == 0 {
		t.Fatalf("%s of %s has no %q any more: pick another patch", loopPatchFile, version, loopOld)
	}
	if err := os.WriteFile(filepath.Join(tree, loopPatchFile), []byte(strings.ReplaceAll(string(b), loopOld, loopNew)), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "k8s-local")
	patched := version + "+svcsim.loop"
	build := exec.Command(filepath.Join(upstream, "local-build.sh"), tree, out)
	build.Env = append(os.Environ(), "KUBERNETES_SRC_VERSION="+patched)
	begin := time.Now()
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("local-build.sh: %v\n%s", err, b)
	}
	t.Logf("built %s from the patched tree in %v", out, time.Since(begin).Round(time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := kubeProxyDiff(ctx, proxyDiffOptions{Base: pinned, With: out, Nodes: 2, Manifests: []plane.Manifest{loopObjects},
		Datapaths: []string{"kube-proxy/iptables-nft", "kube-proxy/nftables"}, Log: &log})
	if err != nil {
		t.Fatalf("kube-proxy-diff: %v\n%s", err, log.String())
	}
	var report bytes.Buffer
	printProxyDiffs(&report, pinned, out, res)
	t.Logf("kube-proxy-diff:\n%s", report.String())
	if len(res) != 4 {
		t.Fatalf("%d comparisons, want 2 datapaths x 2 nodes", len(res))
	}
	for _, d := range res {
		if d.BaseVersion != version || d.WithVersion != patched {
			t.Errorf("%s on %s: versions %s -> %s, want %s -> %s", d.Datapath, d.Node, d.BaseVersion, d.WithVersion, version, patched)
		}
		if d.Datapath == "kube-proxy/nftables" {
			if len(d.OnlyBase)+len(d.OnlyWith) != 0 {
				t.Errorf("%s on %s: the patch changes only the iptables proxier, yet %d lines differ", d.Datapath, d.Node, len(d.OnlyBase)+len(d.OnlyWith))
			}
			continue
		}
		if len(d.OnlyBase) == 0 || len(d.OnlyBase) != len(d.OnlyWith) {
			t.Errorf("%s on %s: %d lines removed, %d added; want the same number, at least one", d.Datapath, d.Node, len(d.OnlyBase), len(d.OnlyWith))
		}
		for _, l := range d.OnlyBase {
			if !strings.Contains(l, loopOld) {
				t.Errorf("%s on %s: removed a line without the patched comment: %s", d.Datapath, d.Node, l)
			}
		}
		for i, l := range d.OnlyWith {
			if !strings.Contains(l, loopNew) {
				t.Errorf("%s on %s: added a line without the new comment: %s", d.Datapath, d.Node, l)
			} else if i < len(d.OnlyBase) && strings.ReplaceAll(d.OnlyBase[i], loopOld, loopNew) != l {
				t.Errorf("%s on %s: %q became %q: more than the comment changed", d.Datapath, d.Node, d.OnlyBase[i], l)
			}
		}
	}
}

// copyPinnedTree copies the k8s.io/kubernetes module that upstream/go.mod
// pins, and every staging module it pins with a replace directive, from the
// module cache into tree as a checkout lays them out, writable, and returns
// the pinned version.
func copyPinnedTree(t *testing.T, upstream, tree string) string {
	t.Helper()
	goCmd := func(args ...string) []byte {
		c := exec.Command("go", args...)
		c.Dir = upstream
		out, err := c.Output()
		if err != nil {
			t.Fatalf("go %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	var mod struct {
		Require []struct{ Path, Version string }
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(goCmd("mod", "edit", "-json"), &mod); err != nil {
		t.Fatal(err)
	}
	version := ""
	for _, r := range mod.Require {
		if r.Path == "k8s.io/kubernetes" {
			version = r.Version
		}
	}
	if version == "" {
		t.Fatal("upstream/go.mod requires no k8s.io/kubernetes")
	}
	cache := strings.TrimSpace(string(goCmd("env", "GOMODCACHE")))
	cp := func(from, to string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-r", from, to).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", from, err, out)
		}
	}
	begin := time.Now()
	cp(filepath.Join(cache, "k8s.io", "kubernetes@"+version), tree)
	n := 0
	for _, r := range mod.Replace {
		if r.Old.Path != r.New.Path || !strings.HasPrefix(r.Old.Path, "k8s.io/") {
			continue
		}
		dir := filepath.Join(cache, r.New.Path+"@"+r.New.Version)
		if _, err := os.Stat(dir); err != nil {
			continue // not needed by the build, so never downloaded
		}
		cp(dir, filepath.Join(tree, "staging", "src", r.New.Path))
		n++
	}
	// The module cache's files are read-only.
	if out, err := exec.Command("chmod", "-R", "u+w", tree).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	t.Logf("copied k8s.io/kubernetes@%s and %d staging modules from %s in %v", version, n, cache, time.Since(begin).Round(time.Millisecond))
	return version
}

// TestSettledDumps: a dump counts once it reads the same n times in a row;
// one that keeps changing is taken as last read when the time is up.
func TestSettledDumps(t *testing.T) {
	seq := []string{"a", "b", "b", "c", "c", "c", "d"}
	i := 0
	dump := func() (map[string][]string, error) {
		v := seq[min(i, len(seq)-1)]
		i++
		return map[string][]string{"node1": {v}}, nil
	}
	got, err := settledDumps(context.Background(), dump, 3, time.Millisecond, time.Minute)
	if err != nil || got["node1"][0] != "c" || i != 6 {
		t.Errorf("settled on %v after %d reads (%v), want c after 6", got, i, err)
	}
	n := 0
	changing := func() (map[string][]string, error) {
		n++
		return map[string][]string{"node1": {fmt.Sprint(n)}}, nil
	}
	got, err = settledDumps(context.Background(), changing, 3, time.Millisecond, 20*time.Millisecond)
	if err != nil || got["node1"][0] != fmt.Sprint(n) {
		t.Errorf("a changing dump gave %v (%v), want the last read %d", got, err, n)
	}
}
