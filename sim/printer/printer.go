// Package printer renders the cluster model like kubectl get: tables with
// kubectl's columns (text/tabwriter with kubectl's settings, AGE humanized
// the same way), -o wide, -o yaml, -o json and -o name.
package printer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/svcsim/svcsim/sim"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Request is one `get` (or, with Describe, one `describe`).
type Request struct {
	// Args are kubectl's resource arguments (see ParseArgs): TYPE[,TYPE...]
	// [NAME...], or TYPE/NAME...; when set, Kind and Name are not used.
	Args []string
	// Kind is a resource name or alias: pods, po, svc, endpoints, ep,
	// endpointslices, ingress, ing, deployments, deploy, daemonsets, ds,
	// nodes, no, ns.
	Kind string
	// Name selects one object; empty lists all.
	Name string
	// Namespace defaults to "default"; ignored for nodes and namespaces.
	Namespace     string
	AllNamespaces bool
	// Output is "", "wide", "yaml", "json" or "name".
	Output string
	// Selector is a label selector (-l), e.g. "app=getip".
	Selector string
	// Describe prints kubectl describe's account of each object instead
	// (Output is not used).
	Describe bool
	// Now is the reference time for AGE; zero means time.Now().
	Now time.Time
}

// Print writes the objects r asks for in r.Output's format (or describes
// them). Objects asked for by a name that does not exist are left out and
// named in the error, after the others are printed, as kubectl does.
func Print(w io.Writer, c *sim.Cluster, r Request) error {
	sels, err := r.selections()
	if err != nil {
		return err
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	if r.Namespace == "" {
		r.Namespace = "default"
	}
	sel := labels.Everything()
	if r.Selector != "" {
		if sel, err = labels.Parse(r.Selector); err != nil {
			return fmt.Errorf("parse selector %q: %w", r.Selector, err)
		}
	}
	if !r.Describe {
		switch r.Output {
		case "", "wide", "yaml", "json", "name":
		default:
			return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,name,wide,yaml", r.Output)
		}
	}
	if r.Describe {
		for _, s := range sels {
			if !describable[s.Kind] {
				return fmt.Errorf("svcsim describes Services, Pods, Nodes and Endpoints; for %s use svcsim get %s -o yaml", KindName(s.Kind), KindName(s.Kind))
			}
		}
	}
	type found struct {
		kind string
		objs []runtime.Object
	}
	var all []found
	var missing []error
	named, total := 0, 0
	for _, s := range sels {
		f := found{kind: s.Kind}
		clusterScoped := clusterScopedKind(s.Kind)
		if len(s.Names) > 0 {
			named += len(s.Names)
			for _, n := range s.Names {
				o, err := c.Get(s.Kind, r.Namespace, n)
				if err != nil {
					missing = append(missing, err)
					continue
				}
				f.objs = append(f.objs, o)
			}
		} else {
			for _, o := range list(c, s.Kind) {
				m, _ := meta.Accessor(o)
				if !clusterScoped && !r.AllNamespaces && m.GetNamespace() != r.Namespace {
					continue
				}
				if !sel.Matches(labels.Set(m.GetLabels())) {
					continue
				}
				f.objs = append(f.objs, o)
			}
		}
		total += len(f.objs)
		all = append(all, f)
	}
	err = func() error {
		if r.Describe {
			first := true
			for _, f := range all {
				for _, o := range f.objs {
					if !first {
						fmt.Fprint(w, "\n\n")
					}
					first = false
					if err := describe(w, c, o, r.Now); err != nil {
						return err
					}
				}
			}
			if total == 0 && len(missing) == 0 {
				return noResources(w, sels, r)
			}
			return nil
		}
		switch r.Output {
		case "yaml", "json":
			var objs []runtime.Object
			for _, f := range all {
				objs = append(objs, f.objs...)
			}
			if total == 0 && len(missing) > 0 {
				return nil
			}
			return printObjects(w, objs, r.Output, named == 1 && len(sels) == 1 && total == 1)
		case "name":
			for _, f := range all {
				for _, o := range f.objs {
					m, _ := meta.Accessor(o)
					if _, err := fmt.Fprintf(w, "%s/%s\n", KindName(f.kind), m.GetName()); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if total == 0 {
			if len(missing) > 0 {
				return nil
			}
			return noResources(w, sels, r)
		}
		first := true
		for _, f := range all {
			if len(f.objs) == 0 {
				continue
			}
			if !first {
				fmt.Fprintln(w)
			}
			first = false
			clusterScoped := clusterScopedKind(f.kind)
			o := TableOptions{Wide: r.Output == "wide", AllNamespaces: r.AllNamespaces && !clusterScoped, Now: r.Now, Created: c.Created()}
			if len(sels) > 1 {
				o.NamePrefix = KindName(f.kind) + "/"
			}
			if err := Table(w, f.kind, f.objs, o); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return err
	}
	return errors.Join(missing...)
}

// noResources says that nothing matched, as kubectl does.
func noResources(w io.Writer, sels []Selection, r Request) error {
	clusterScoped := true
	for _, s := range sels {
		clusterScoped = clusterScoped && clusterScopedKind(s.Kind)
	}
	var err error
	switch {
	case clusterScoped || r.AllNamespaces:
		_, err = fmt.Fprintln(w, "No resources found")
	default:
		_, err = fmt.Fprintf(w, "No resources found in %s namespace.\n", r.Namespace)
	}
	return err
}

func list(c *sim.Cluster, kind string) []runtime.Object {
	var out []runtime.Object
	switch kind {
	case "Pod":
		for _, o := range c.PodObjects() {
			out = append(out, &o)
		}
	case "Service":
		for _, o := range c.Services() {
			out = append(out, &o)
		}
	case "Endpoints":
		for _, o := range c.Endpoints() {
			out = append(out, &o)
		}
	case "Ingress":
		for _, o := range c.Ingresses() {
			out = append(out, &o)
		}
	case "EndpointSlice":
		for _, o := range c.EndpointSlices() {
			out = append(out, &o)
		}
	case "Deployment":
		for _, o := range c.Deployments() {
			out = append(out, &o)
		}
	case "DaemonSet":
		for _, o := range c.DaemonSets() {
			out = append(out, &o)
		}
	case "Namespace":
		for _, o := range c.Namespaces() {
			out = append(out, &o)
		}
	case "Node":
		for _, o := range c.NodeObjects() {
			out = append(out, &o)
		}
	default:
		out, _ = c.Stored(kind)
	}
	return out
}

// printObjects writes one object, or a v1 List of them, as YAML or JSON.
func printObjects(w io.Writer, objs []runtime.Object, format string, single bool) error {
	var v any
	if single && len(objs) == 1 {
		v = objs[0]
	} else {
		items := make([]runtime.Object, len(objs))
		copy(items, objs)
		v = struct {
			APIVersion string           `json:"apiVersion"`
			Items      []runtime.Object `json:"items"`
			Kind       string           `json:"kind"`
			Metadata   map[string]any   `json:"metadata"`
		}{"v1", items, "List", map[string]any{"resourceVersion": ""}}
	}
	var (
		out []byte
		err error
	)
	if format == "json" {
		out, err = json.MarshalIndent(v, "", "    ")
		out = append(out, '\n')
	} else {
		out, err = yaml.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", format, err)
	}
	_, err = w.Write(out)
	return err
}
