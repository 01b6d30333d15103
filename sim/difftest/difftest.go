// Package difftest is the model differential test's table: manifests that
// are applied to the embedded model (sim) and to the genuine API server
// (plane/kube's TestModelDifferential, as root), with the genuine server's
// answer pinned in each case. The root-free test in this package holds the
// model to the same pins, so the two agree wherever no case says why not.
package difftest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/svcsim/svcsim/sim"
	"k8s.io/apimachinery/pkg/api/meta"
)

// Case is one row of the table.
type Case struct {
	Name string
	// Setup are manifests applied first, one after the other; each must be
	// accepted by both.
	Setup []string
	// Manifest is applied last.
	Manifest string
	// Want is the genuine API server's error for Manifest, one line per
	// refused object as kubectl prints it after `error when creating
	// "STDIN": ` ("" when every object is accepted).
	Want string
	// Model, with Why, is the embedded model's different answer, kept on
	// purpose ("" when it gives Want).
	Model, Why string
}

// ModelWant is what the embedded model must answer.
func (c Case) ModelWant() string {
	if c.Model != "" {
		return c.Model
	}
	return c.Want
}

// Ref names one object of a manifest.
type Ref struct{ Kind, Namespace, Name string }

func (r Ref) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// Outcome is what applying a case gave: the last manifest's error lines
// and, once accepted, its objects as stored (JSON values).
type Outcome struct {
	Err     string
	Objects map[Ref]map[string]any
}

// Doc is one object of a manifest: its name and its document as written,
// as JSON.
type Doc struct {
	Ref
	JSON []byte
}

// Docs splits a manifest into its objects, namespaced ones in namespace
// when they name none.
func Docs(manifest, namespace string) ([]Doc, error) {
	objs, err := decode(manifest, namespace)
	if err != nil {
		return nil, err
	}
	var docs []Doc
	for _, o := range objs {
		m, err := meta.Accessor(o.Obj)
		if err != nil {
			return nil, fmt.Errorf("difftest: %w", err)
		}
		docs = append(docs, Doc{Ref{o.Obj.GetObjectKind().GroupVersionKind().Kind, m.GetNamespace(), m.GetName()}, o.Raw})
	}
	return docs, nil
}

func decode(manifest, namespace string) ([]sim.Object, error) {
	objs, err := sim.Decode([]byte(manifest), "STDIN")
	if err != nil {
		return nil, fmt.Errorf("difftest: %w", err)
	}
	for _, o := range objs {
		m, err := meta.Accessor(o.Obj)
		if err != nil {
			return nil, fmt.Errorf("difftest: %w", err)
		}
		if kind := o.Obj.GetObjectKind().GroupVersionKind().Kind; kind != "Namespace" && kind != "Node" && m.GetNamespace() == "" {
			m.SetNamespace(namespace)
		}
	}
	return objs, nil
}

// RunModel applies c to a fresh embedded model in namespace, as `svcsim
// apply -n namespace` would.
func RunModel(c Case, namespace string) (Outcome, error) {
	cl, err := sim.New(sim.DefaultConfig(2))
	if err != nil {
		return Outcome{}, fmt.Errorf("difftest: %w", err)
	}
	nsDoc := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + namespace + "\n"
	for i, m := range append([]string{nsDoc}, c.Setup...) {
		objs, err := decode(m, namespace)
		if err != nil {
			return Outcome{}, err
		}
		if _, err := cl.Apply(objs); err != nil {
			return Outcome{}, fmt.Errorf("difftest: %s: setup %d refused: %w", c.Name, i, err)
		}
	}
	objs, err := decode(c.Manifest, namespace)
	if err != nil {
		return Outcome{}, err
	}
	if _, err = cl.Apply(objs); err != nil {
		var be *sim.BatchError
		if !errors.As(err, &be) {
			return Outcome{Err: err.Error()}, nil
		}
		var lines []string
		for _, e := range be.Errs {
			var oe *sim.ObjectError
			if errors.As(e, &oe) {
				e = oe.Err
			}
			lines = append(lines, e.Error())
		}
		return Outcome{Err: strings.Join(lines, "\n")}, nil
	}
	out := Outcome{Objects: map[Ref]map[string]any{}}
	docs, err := Docs(c.Manifest, namespace)
	if err != nil {
		return Outcome{}, err
	}
	for _, d := range docs {
		r := d.Ref
		o, err := cl.Get(r.Kind, r.Namespace, r.Name)
		if err != nil {
			return Outcome{}, fmt.Errorf("difftest: %s: get %v: %w", c.Name, r, err)
		}
		v, err := jsonValue(o)
		if err != nil {
			return Outcome{}, err
		}
		out.Objects[r] = v
	}
	return out, nil
}

func jsonValue(o any) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("difftest: encode: %w", err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("difftest: decode: %w", err)
	}
	return v, nil
}

// Ranges are the allocation ranges both control planes use.
type Ranges struct {
	ServiceCIDR              netip.Prefix
	NodePortMin, NodePortMax float64
}

// DefaultRanges are sim.DefaultConfig's, which plane/kube's API server
// flags repeat.
func DefaultRanges() Ranges {
	cfg := sim.DefaultConfig(1)
	return Ranges{cfg.ServiceCIDR, float64(cfg.NodePortMin), float64(cfg.NodePortMax)}
}

// volatile are the fields each server sets its own way on every object.
var volatile = []string{"uid", "resourceVersion", "creationTimestamp", "managedFields"}

// Known is a stored field in which the model differs from the genuine
// server on purpose; "[*]" in Path stands for any index.
type Known struct{ Path, Why string }

// noNodes is why pods and DaemonSets differ in the test itself: its
// control plane has no nodes or kubelets.
const noNodes = "the differential test's genuine control plane has no nodes: its pods stay Pending and unscheduled, the model's are scheduled and running at once"

// Intentional lists the Known differences of each kind's stored objects.
var Intentional = map[string][]Known{
	"Pod": {
		{"spec.nodeName", noNodes},
		{"status", noNodes},
		{"spec.volumes", "ServiceAccount admission mounts a token volume (kube-api-access-*); the embedded model has no API server for pods to present one to"},
		{"spec.containers[*].volumeMounts", "the token volume's mount, as spec.volumes"},
	},
	"DaemonSet": {
		{"status", noNodes},
		{"metadata.annotations.deprecated.daemonset.template.generation", "the model does not number a DaemonSet's template generations"},
	},
	"Deployment": {
		{"status", "the genuine Deployment controller writes status a moment after the create, the model's at once"},
		{"metadata.annotations.deployment.kubernetes.io/revision", "the model does not number a Deployment's rollouts"},
	},
}

// Diff compares a stored object of kind as the genuine server returned it
// with the model's, after dropping volatile metadata, and lists every path
// whose values differ, but the Intentional ones. Allocated values
// (ClusterIPs, NodePorts) count as equal when both lie in the range: each
// server picks at random.
func Diff(kind string, server, model map[string]any, r Ranges) []string {
	// Through JSON, so numbers are float64 on both sides.
	server, _ = jsonValue(server)
	model, _ = jsonValue(model)
	for _, v := range []map[string]any{server, model} {
		if md, ok := v["metadata"].(map[string]any); ok {
			for _, f := range volatile {
				delete(md, f)
			}
		}
	}
	var all []string
	diff("", server, model, r, &all)
	var out []string
	for _, d := range all {
		if !known(kind, d) {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func known(kind, d string) bool {
	for _, k := range Intentional[kind] {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(k.Path), `\[\*\]`, `\[\d+\]`) + `($|[.\[:])`)
		if re.MatchString(d) {
			return true
		}
	}
	return false
}

func diff(path string, a, b any, r Ranges, out *[]string) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		for k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diff(p, x[k], y[k], r, out)
		}
		return
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			break
		}
		for i := range x {
			diff(fmt.Sprintf("%s[%d]", path, i), x[i], y[i], r, out)
		}
		return
	}
	if equalJSON(a, b) || bothAllocated(path, a, b, r) {
		return
	}
	*out = append(*out, fmt.Sprintf("%s: server %s, model %s", path, show(a), show(b)))
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func bothAllocated(path string, a, b any, r Ranges) bool {
	last := path[strings.LastIndex(path, ".")+1:]
	switch {
	case last == "clusterIP" || strings.HasPrefix(last, "clusterIPs["):
		x, _ := a.(string)
		y, _ := b.(string)
		ax, err1 := netip.ParseAddr(x)
		ay, err2 := netip.ParseAddr(y)
		return err1 == nil && err2 == nil && r.ServiceCIDR.Contains(ax) && r.ServiceCIDR.Contains(ay)
	case last == "nodePort" || last == "healthCheckNodePort":
		x, ok1 := a.(float64)
		y, ok2 := b.(float64)
		return ok1 && ok2 && x >= r.NodePortMin && x <= r.NodePortMax && y >= r.NodePortMin && y <= r.NodePortMax
	}
	return false
}

func show(v any) string {
	if v == nil {
		return "absent"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
