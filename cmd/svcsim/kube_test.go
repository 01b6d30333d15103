package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology/topotest"
)

// TestSeedWalkthroughOnKubernetes builds svcsim, starts the kubernetes
// plane with the seed's Deployments, runs the seed's Service commands
// verbatim through `svcsim kubectl`, reaches the NodePort from outside and
// a Service by name from a pod with `svcsim exec`, and checks that `svcsim
// down` leaves no namespace or process of the run and nothing under HOME.
func TestSeedWalkthroughOnKubernetes(t *testing.T) {
	topotest.RequireRoot(t)
	if _, explicit, err := kube.FindBinary(); err != nil {
		if explicit {
			t.Fatal(err)
		}
		t.Skipf("%v", err)
	}
	if bin, _, _ := kube.FindBinary(); os.Getenv(kube.BinaryEnv) == "" {
		t.Setenv(kube.BinaryEnv, bin)
	}
	// svcsim runs with an empty HOME of its own: nothing may appear there.
	home := t.TempDir()
	dir := t.TempDir()
	svcsim := filepath.Join(dir, "svcsim")
	if out, err := exec.Command("go", "build", "-o", svcsim, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	seed := filepath.Join("..", "..", "sim", "testdata", "seed")
	abs, _ := filepath.Abs(seed)
	// The seed's myhttp-v2-service.yaml is the Service document of 02-myhttp-v2.yaml.
	b, err := os.ReadFile(filepath.Join(abs, "02-myhttp-v2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "kind: Service") {
			if err := os.WriteFile(filepath.Join(dir, "myhttp-v2-service.yaml"), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		c := exec.Command(svcsim, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "HOME="+home)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		err := c.Run()
		return out.String(), err
	}
	// sh runs a command line as a shell reads it: the seed's commands verbatim.
	sh := func(line string) string {
		t.Helper()
		c := exec.Command("/bin/sh", "-c", line)
		c.Dir = dir
		c.Env = append(os.Environ(), "HOME="+home, "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return string(out)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("svcsim %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	begin := time.Now()
	out, err := run("up", "--control-plane", "kubernetes", "-f", filepath.Join(abs, "00-getip.yaml"), "-f", filepath.Join(abs, "03-myhttp-service.yaml"))
	var id string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "run" && f[2] == "ready" {
			id = strings.TrimSuffix(f[1], ":")
		}
	}
	defer func() {
		if out, err := run("down"); err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
		if id == "" {
			return
		}
		entries, _ := os.ReadDir(netns.Dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), id) {
				t.Errorf("namespace %s left after down", e.Name())
			}
		}
		if out, _ := exec.Command("pgrep", "-f", "/run/svcsim/"+id+"/").Output(); len(out) > 0 {
			t.Errorf("processes of %s left after down: %s", id, out)
		}
		if entries, _ := os.ReadDir(home); len(entries) > 0 {
			t.Errorf("files written under HOME: %v", entries)
		}
	}()
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("up with the getip Deployment programmed after %v", time.Since(begin).Round(time.Millisecond))
	// The seed's walkthrough, verbatim.
	if out := must("kubectl", "apply", "-f", filepath.Join(abs, "02-myhttp-v2.yaml")); !strings.Contains(out, "deployment.apps/myhttp-v2 created") {
		t.Errorf("apply: %s", out)
	}
	must("kubectl", "delete", "svc", "myhttp-v2-service")
	if out := sh("svcsim kubectl create -f ./myhttp-v2-service.yaml"); !strings.Contains(out, "service/myhttp-v2-service created") {
		t.Errorf("create: %s", out)
	}
	if out := sh(`svcsim kubectl patch svc getip-service -p '{"spec":{"sessionAffinity":"ClientIP"}}'`); !strings.Contains(out, "service/getip-service patched") {
		t.Errorf("patch: %s", out)
	}
	must("kubectl", "wait", "--for=condition=Ready", "pod", "-l", "app=getip", "--timeout=60s")
	if out := sh("svcsim kubectl get pods -o wide -l app=getip"); strings.Count(out, "Running") != 2 || !strings.Contains(out, "10.244.") {
		t.Errorf("get pods:\n%s", out)
	}
	if out := sh(`svcsim kubectl label node node1 isIngress="true"`); !strings.Contains(out, "node/node1 labeled") {
		t.Errorf("label: %s", out)
	}
	out = sh("svcsim kubectl get svc -o wide")
	if !strings.Contains(out, "8800:30080/TCP") || !strings.Contains(out, "getip-service") {
		t.Errorf("get svc:\n%s", out)
	}
	// The API server's own error for a version it no longer serves.
	if out, err := run("kubectl", "apply", "-f", filepath.Join(abs, "06-ingress-http.yaml")); err == nil || !strings.Contains(out, `no matches for kind "Ingress" in version "extensions/v1beta1"`) {
		t.Errorf("extensions/v1beta1 Ingress: %v\n%s", err, out)
	}
	must("kubectl", "wait", "--for=condition=Ready", "pod", "-l", "app=myhttp-v2", "--timeout=60s")
	// kube-proxy programs asynchronously: poll the NodePort briefly.
	var got string
	for i := 0; i < 50; i++ {
		if got, err = run("exec", "external", "--", "curl", "-s", "-m", "2", "http://198.18.0.11:30080/info"); err == nil && strings.Contains(got, "IpInfo") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(got, "IpInfo") {
		t.Errorf("NodePort 30080 from external: %v %s", err, got)
	}
	pods := must("kubectl", "get", "pods", "-l", "app=getip", "-o", "jsonpath={.items[0].metadata.name}")
	if out := must("exec", pods, "--", "curl", "-s", "-m", "2", "http://getip-service/name"); !strings.HasPrefix(out, "default/getip-deployment-") {
		t.Errorf("getip-service by name from pod %s: %q", pods, out)
	}
	if out := must("shell"); out != "" {
		t.Logf("shell without a terminal: %q", out)
	}
}
