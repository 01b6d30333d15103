package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/difftest"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// resources maps the table's kinds to the API's resources.
var resources = map[string]schema.GroupVersionResource{
	"Namespace":     {Version: "v1", Resource: "namespaces"},
	"Service":       {Version: "v1", Resource: "services"},
	"Endpoints":     {Version: "v1", Resource: "endpoints"},
	"Pod":           {Version: "v1", Resource: "pods"},
	"EndpointSlice": {Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	"Deployment":    {Group: "apps", Version: "v1", Resource: "deployments"},
	"DaemonSet":     {Group: "apps", Version: "v1", Resource: "daemonsets"},
	"Ingress":       {Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"},
	"Secret":        {Version: "v1", Resource: "secrets"},
}

// TestModelDifferential applies every case of sim/difftest to the genuine
// API server (one control plane for the whole table, each case in a
// namespace of its own) and to a fresh embedded model, compares both
// answers with the case's pins, and compares the stored objects of
// accepted manifests field by field. Setup manifests go through the genuine
// `kubectl apply -n`, as the kubernetes plane's `svcsim apply` does. Each
// object of the last manifest is sent as kubectl apply sends it (a create
// carrying the last-applied annotation, or its three-way strategic merge
// patch), object by object, which gives the API server's own message; a
// refused one is then sent with kubectl too, whose answer must name the
// same causes. (A dry run would not do: it skips the allocators' checks
// that a real create makes before validation.) SVCSIM_DIFF=text runs the
// cases whose name contains text.
func TestModelDifferential(t *testing.T) {
	privtest.RequireRoot(t)
	bin := binary(t)
	spec := topology.DefaultSpec(privtest.NewRun(t), 1)
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	topo := topotest.Build(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cp, err := kube.Start(ctx, kube.Config{Run: topo.Run(), NS: topo.ControlPlane(), AdvertiseIP: spec.ControlPlaneIP, Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return topology.DialContext(ctx, cp.NS(), network, addr)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubectlApply := func(ns string, manifest []byte) error {
		var out, errb bytes.Buffer
		if err := cp.Kubectl(ctx, kube.KubectlOptions{In: bytes.NewReader(manifest), Out: &out, Err: &errb}, "apply", "-n", ns, "-f", "-"); err != nil {
			return &kubectlError{err, errb.String()}
		}
		return nil
	}
	ranges := difftest.DefaultRanges()
	only := os.Getenv("SVCSIM_DIFF")
	begin := time.Now()
	ran := 0
	for i, c := range difftest.Cases {
		if only != "" && !strings.Contains(c.Name, only) {
			continue
		}
		ran++
		ns := fmt.Sprintf("case%03d", i)
		t.Run(c.Name, func(t *testing.T) {
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.Join(append(c.Setup, c.Manifest), "\n"), "kind: Pod") {
				waitServiceAccount(ctx, t, cs, ns)
			}
			for j, m := range c.Setup {
				if err := kubectlApply(ns, []byte(m)); err != nil {
					t.Fatalf("setup %d refused by the API server: %v", j, err)
				}
			}
			docs, err := difftest.Docs(c.Manifest, ns)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, d := range docs {
				if err := apply(ctx, dyn, d); err != nil {
					var se *apierrors.StatusError
					if !errors.As(err, &se) {
						t.Fatalf("%v: %v", d.Ref, err)
					}
					msgs = append(msgs, se.Error())
					// kubectl is refused too, for the same causes (it
					// prints each as "field: message").
					err := kubectlApply(ns, d.JSON)
					var ke *kubectlError
					if !errors.As(err, &ke) {
						t.Errorf("%v: refused (%v), then kubectl apply: %v", d.Ref, se, err)
						continue
					}
					for _, cause := range se.ErrStatus.Details.Causes {
						if want := cause.Field + ": " + cause.Message; !strings.Contains(ke.stderr, want) {
							t.Errorf("%v: the cause %q is not in kubectl apply's answer:\n%s", d.Ref, want, ke.stderr)
						}
					}
				}
			}
			got := strings.Join(msgs, "\n")
			model, err := difftest.RunModel(c, ns)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.Want {
				t.Errorf("the API server said\n\t%q\nthe case pins\n\t%q", got, c.Want)
			}
			if model.Err != c.ModelWant() {
				t.Errorf("the model said\n\t%q\nthe case pins\n\t%q", model.Err, c.ModelWant())
			}
			if got != "" || model.Err != "" {
				return
			}
			for _, d := range docs {
				u, err := resourceOf(dyn, d.Ref).Get(ctx, d.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("get %v: %v", d.Ref, err)
				}
				for _, diff := range difftest.Diff(d.Kind, u.Object, model.Objects[d.Ref], ranges) {
					t.Errorf("%v: %s", d.Ref, diff)
				}
			}
		})
		// Services go at once (their addresses and ports are released
		// synchronously); the namespace controller removes the rest.
		svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs.Items {
			if err := cs.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d cases in %v", ran, time.Since(begin).Round(time.Millisecond))
}

// kubectlError is a failed kubectl run with its standard error.
type kubectlError struct {
	err    error
	stderr string
}

func (e *kubectlError) Error() string { return fmt.Sprintf("kubectl apply: %v: %s", e.err, e.stderr) }

func resourceOf(dyn dynamic.Interface, r difftest.Ref) dynamic.ResourceInterface {
	if r.Namespace == "" {
		return dyn.Resource(resources[r.Kind])
	}
	return dyn.Resource(resources[r.Kind]).Namespace(r.Namespace)
}

// apply sends d as `kubectl apply` does, with strict field validation: a
// create carrying the last-applied annotation (the document with the
// namespace filled in and that annotation removed, as JSON), or, for an
// existing object, the three-way strategic merge patch of its last-applied
// configuration, d and the live object.
func apply(ctx context.Context, dyn dynamic.Interface, d difftest.Doc) error {
	if _, ok := resources[d.Kind]; !ok {
		return fmt.Errorf("no resource for kind %s", d.Kind)
	}
	var obj map[string]any
	if err := json.Unmarshal(d.JSON, &obj); err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: obj}
	if d.Namespace != "" {
		u.SetNamespace(d.Namespace)
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	delete(ann, sim.LastAppliedAnnotation)
	u.SetAnnotations(ann)
	cfgJSON, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	ann[sim.LastAppliedAnnotation] = string(cfgJSON) + "\n"
	u.SetAnnotations(ann)
	modified, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	res := resourceOf(dyn, d.Ref)
	live, err := res.Get(ctx, d.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = res.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
		return err
	}
	if err != nil {
		return err
	}
	current, err := json.Marshal(live.Object)
	if err != nil {
		return err
	}
	typed, err := scheme.Scheme.New(live.GroupVersionKind())
	if err != nil {
		return err
	}
	patchMeta, err := strategicpatch.NewPatchMetaFromStruct(typed)
	if err != nil {
		return err
	}
	var original []byte
	if o := live.GetAnnotations()[sim.LastAppliedAnnotation]; o != "" {
		original = []byte(o)
	}
	patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, current, patchMeta, true)
	if err != nil {
		return err
	}
	_, err = res.Patch(ctx, d.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldValidation: "Strict"})
	return err
}

func waitServiceAccount(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("no default ServiceAccount in %s: %v", ns, err)
		}
	}
}
