package kubelet

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// status is the pod status the kubelet's status manager would write now:
// phase, host and pod IPs, conditions and container statuses. Fields the
// kubelet does not own (the scheduler's PodScheduled, qosClass, other
// writers' conditions such as readiness gates) are kept from old.
func (w *podWorker) status(pod *corev1.Pod) corev1.PodStatus {
	old := pod.Status
	st := *old.DeepCopy()
	st.ObservedGeneration = pod.Generation
	host := w.k.cfg.NodeIP.String()
	st.HostIP, st.HostIPs = host, []corev1.HostIP{{IP: host}}
	if st.StartTime == nil {
		t := w.startTime
		st.StartTime = &t
	}
	sandbox := w.sandbox != nil || w.terminal
	if sandbox && w.ip.IsValid() {
		st.PodIP, st.PodIPs = w.ip.String(), []corev1.PodIP{{IP: w.ip.String()}}
	}

	override := w.override()
	var statuses []corev1.ContainerStatus
	var unready []string
	allReady, running, failed := true, 0, 0
	for i := range pod.Spec.Containers {
		spec := pod.Spec.Containers[i]
		cs := corev1.ContainerStatus{Name: spec.Name, Image: spec.Image, ImageID: spec.Image, Started: new(bool)}
		var c *ctrState
		for _, s := range w.ctrs {
			if s.spec.Name == spec.Name {
				c = s
			}
		}
		switch {
		case c == nil:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: w.waiting}
		case c.running:
			running++
			cs.ContainerID = "svcsim://" + c.id
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
			cs.Ready, *cs.Started = c.ready, c.started
			if override != nil {
				cs.Ready = *override
			}
		case c.terminated != nil:
			cs.ContainerID = "svcsim://" + c.id
			cs.State.Terminated = c.terminated.DeepCopy()
			if c.terminated.ExitCode != 0 {
				failed++
			}
		}
		if c != nil {
			cs.RestartCount = c.restarts
			if c.lastTerm != nil {
				cs.LastTerminationState.Terminated = c.lastTerm.DeepCopy()
			}
		}
		if !cs.Ready {
			allReady = false
			unready = append(unready, spec.Name)
		}
		statuses = append(statuses, cs)
	}
	st.ContainerStatuses = statuses
	// Init containers are not run: they report as completed.
	st.InitContainerStatuses = nil
	for _, ic := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{Name: ic.Name, Image: ic.Image, ImageID: ic.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: w.startTime, FinishedAt: w.startTime}}})
	}

	switch {
	case w.terminal && failed > 0:
		st.Phase = corev1.PodFailed
	case w.terminal:
		st.Phase = corev1.PodSucceeded
	case running > 0:
		st.Phase = corev1.PodRunning
	case len(w.ctrs) > 0 && running == 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
		st.Phase = corev1.PodFailed
	default:
		st.Phase = corev1.PodPending
	}

	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: now}
		if ok {
			c.Status = corev1.ConditionTrue
		} else {
			c.Reason, c.Message = reason, msg
		}
		for i, o := range st.Conditions {
			if o.Type != t {
				continue
			}
			if o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
		st.Conditions = append(st.Conditions, c)
	}
	gatesOK := true
	for _, g := range pod.Spec.ReadinessGates {
		found := false
		for _, c := range old.Conditions {
			if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
				found = true
			}
		}
		gatesOK = gatesOK && found
	}
	msg := ""
	if len(unready) > 0 {
		msg = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	cond(corev1.PodReadyToStartContainers, w.sandbox != nil, "", "")
	cond(corev1.PodInitialized, true, "", "")
	cond(corev1.ContainersReady, allReady && running > 0, "ContainersNotReady", msg)
	readyMsg, readyReason := msg, "ContainersNotReady"
	if allReady && !gatesOK {
		readyReason, readyMsg = "ReadinessGatesNotReady", "the status of pod readiness gate is not \"True\""
	}
	if w.terminal {
		readyReason = "PodCompleted"
	}
	cond(corev1.PodReady, allReady && running > 0 && gatesOK, readyReason, readyMsg)
	return st
}

// takeOverride reports whether a readiness override arrived since run last
// posted one.
func (w *podWorker) takeOverride() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.overrideNew
	w.overrideNew = false
	return n
}

// override is the readiness override (nil: the probes decide).
func (w *podWorker) override() *bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.readyOverride
}

// postStatus writes the pod's status when it changed since the last post.
func (w *podWorker) postStatus(ctx context.Context) {
	// Most probe rounds change nothing: decide that on the informer's copy
	// without asking the API server.
	if cached, _ := w.current(); w.posted != nil && cached != nil && sameStatus(*w.posted, w.status(cached)) {
		return
	}
	pods := w.k.cfg.Client.CoreV1().Pods(w.ns)
	cached, _ := w.current()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// The informer's copy first; after a conflict, a fresh one.
		pod := cached
		if cached = nil; pod == nil {
			var err error
			if pod, err = pods.Get(ctx, w.name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		if pod.UID != w.uid {
			return nil
		}
		st := w.status(pod)
		if w.posted != nil && sameStatus(*w.posted, st) {
			return nil
		}
		pod = pod.DeepCopy()
		pod.Status = st
		if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return err
		}
		w.posted = &st
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		w.logf("post status: %v", err)
	}
}

// sameStatus compares statuses ignoring nothing: transition times are
// carried over, so an unchanged state gives an equal status.
func sameStatus(a, b corev1.PodStatus) bool { return equality.Semantic.DeepEqual(a, b) }
