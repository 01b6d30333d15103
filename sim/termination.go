package sim

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Graceful pod deletion. A pod whose containers keep serving after it is
// deleted (a preStop sleep hook: the container runs on for that long
// before its SIGTERM, and svcsim's built-in servers exit on SIGTERM at
// once) is not removed by Delete: it gets a deletionTimestamp and
// deletionGracePeriodSeconds, as the API server marks it, and stays,
// terminating, until FinishTermination removes it once TerminationDelay
// has passed (the control plane's timer, where a kubelet would confirm
// with a delete of grace 0). The same holds for the pods a Deployment
// removes (scale-down, rollout). Meanwhile its endpoints are terminating (not
// ready; serving while the pod is Ready), its Deployment replaces it, and
// the Endpoints controller leaves it out. A pod without such a hook exits
// at its SIGTERM and is removed at once.

// TerminationDelay is how long pod p keeps serving once deleted: its
// longest preStop sleep, at most its grace period (the kubelet kills it
// then). Zero means it is removed at once.
func TerminationDelay(p *corev1.Pod) time.Duration {
	var sleep int64
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			sleep = max(sleep, c.Lifecycle.PreStop.Sleep.Seconds)
		}
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p.DeletionGracePeriodSeconds != nil {
		grace = *p.DeletionGracePeriodSeconds
	} else if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	return time.Duration(max(0, min(sleep, grace))) * time.Second
}

// deletePod deletes pod p as the API server does: at once, or, with a
// preStop sleep, by marking it terminating (once).
func (t *txn) deletePod(p *corev1.Pod) {
	switch {
	case p.DeletionTimestamp != nil:
		// Already terminating.
	case TerminationDelay(p) > 0:
		t.terminate(p)
	default:
		t.delete("Pod", p.Namespace, p.Name)
	}
}

// terminate marks pod p deleted (terminating) at now, as the API server
// does for a graceful delete.
func (t *txn) terminate(p *corev1.Pod) {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	ts := metav1.NewTime(t.now)
	p.DeletionTimestamp = &ts
	p.DeletionGracePeriodSeconds = &grace
	p.Generation++
	p.ResourceVersion = t.s.nextRV()
}

// Termination is a terminating pod and when it goes.
type Termination struct {
	Namespace, Name string
	UID             types.UID
	// Deadline is its deletionTimestamp plus its TerminationDelay.
	Deadline time.Time
}

// Terminations lists the terminating pods.
func (c *Cluster) Terminations() []Termination {
	var out []Termination
	for _, p := range c.PodObjects() {
		if p.DeletionTimestamp != nil {
			out = append(out, Termination{Namespace: p.Namespace, Name: p.Name, UID: p.UID,
				Deadline: p.DeletionTimestamp.Add(TerminationDelay(&p))})
		}
	}
	return out
}

// FinishTermination removes a terminating pod (its servers have exited):
// the pod namespace/name with uid, if it is still there and terminating.
func (c *Cluster) FinishTermination(namespace, name string, uid types.UID) error {
	return c.change(func(t *txn) error {
		p := t.s.Pods[key(namespaceOr(namespace), name)]
		if p == nil || p.UID != uid || p.DeletionTimestamp == nil {
			return nil
		}
		t.delete("Pod", p.Namespace, p.Name)
		return nil
	})
}
