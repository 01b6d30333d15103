package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/sim"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// Apply applies manifests all-or-nothing (namespaced objects without a
// namespace go into namespace) and returns once the model has accepted
// them; WaitProgrammed waits for the kernel.
func (cp *ControlPlane) Apply(_ context.Context, namespace string, ms ...plane.Manifest) ([]string, error) {
	objs, err := Decode(namespace, ms...)
	if err != nil {
		return nil, err
	}
	return cp.ApplyObjects(objs)
}

// Decode decodes manifests into model objects, putting namespaced objects
// without a namespace into namespace ("" leaves them to "default").
func Decode(namespace string, ms ...plane.Manifest) ([]sim.Object, error) {
	var objs []sim.Object
	for _, m := range ms {
		o, err := sim.Decode(m.Data, m.Source)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	if namespace != "" {
		for _, o := range objs {
			switch o.Obj.(type) {
			case *corev1.Namespace, *corev1.Node:
				continue
			}
			if m, err := meta.Accessor(o.Obj); err == nil && m.GetNamespace() == "" {
				m.SetNamespace(namespace)
			}
		}
	}
	return objs, nil
}

// ApplyObjects applies decoded objects as Apply does.
func (cp *ControlPlane) ApplyObjects(objs []sim.Object) ([]string, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out, err := cp.cluster.Apply(objs)
	if err != nil {
		return nil, err
	}
	cp.wake()
	return out, nil
}

// Patch applies a strategic merge patch to one object.
func (cp *ControlPlane) Patch(_ context.Context, r plane.Ref, patch []byte) error {
	return cp.change(func() error { return cp.cluster.Patch(r.Kind, r.Namespace, r.Name, patch) })
}

// Scale sets a Deployment's replicas.
func (cp *ControlPlane) Scale(_ context.Context, r plane.Ref, replicas int32) error {
	return cp.change(func() error { return cp.cluster.Scale(r.Kind, r.Namespace, r.Name, replicas) })
}

// Delete removes an object.
func (cp *ControlPlane) Delete(_ context.Context, r plane.Ref) error {
	return cp.change(func() error { return cp.cluster.Delete(r.Kind, r.Namespace, r.Name) })
}

// Label sets or removes labels ("key-") on an object.
func (cp *ControlPlane) Label(_ context.Context, r plane.Ref, labels map[string]string) error {
	return cp.change(func() error { return cp.cluster.Label(r.Kind, r.Namespace, r.Name, labels) })
}

// SetPodReady flips a pod's readiness (its endpoints follow).
func (cp *ControlPlane) SetPodReady(_ context.Context, namespace, name string, ready bool) error {
	return cp.change(func() error { return cp.cluster.SetPodReady(namespace, name, ready) })
}

func (cp *ControlPlane) change(f func() error) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if err := f(); err != nil {
		return err
	}
	cp.scheduleTerminations()
	cp.wake()
	return nil
}

// scheduleTerminations starts a timer for every terminating pod without
// one: at its deadline (its preStop sleep, at most its grace period) its
// servers have exited and the pod is removed. Called with mu held.
func (cp *ControlPlane) scheduleTerminations() {
	for _, tm := range cp.cluster.Terminations() {
		k := tm.Namespace + "/" + tm.Name + "/" + string(tm.UID)
		if cp.ends[k] != nil {
			continue
		}
		if cp.ends == nil {
			cp.ends = map[string]*time.Timer{}
		}
		cp.ends[k] = time.AfterFunc(time.Until(tm.Deadline), func() {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			if cp.closed {
				return
			}
			delete(cp.ends, k)
			if err := cp.cluster.FinishTermination(tm.Namespace, tm.Name, tm.UID); err != nil {
				fmt.Fprintf(cp.log, "run %s: finish terminating pod %s/%s: %v\n", cp.run.ID, tm.Namespace, tm.Name, err)
				return
			}
			cp.wake()
		})
	}
}

// wake asks the reconciler for another round.
func (cp *ControlPlane) wake() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// serviceWriter takes a controller's Service writes (the Gateway add-on's
// provisioned Services) into the model, as an API server would.
type serviceWriter struct{ cp *ControlPlane }

func (w serviceWriter) Apply(svc *corev1.Service) (*corev1.Service, error) {
	var out *corev1.Service
	err := w.cp.change(func() error {
		if _, err := w.cp.cluster.Apply([]sim.Object{{Source: "client", Obj: svc}}); err != nil {
			return err
		}
		o, err := w.cp.cluster.Get("service", svc.Namespace, svc.Name)
		if err != nil {
			return err
		}
		out = o.(*corev1.Service)
		return nil
	})
	return out, err
}

func (w serviceWriter) Delete(namespace, name string) error {
	return w.cp.change(func() error { return w.cp.cluster.Delete("service", namespace, name) })
}
