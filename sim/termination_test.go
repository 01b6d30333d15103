package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func preStopSleep(seconds, grace int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.TerminationGracePeriodSeconds = &grace
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}
	}
}

func sliceConditions(t *testing.T, c *Cluster, svc string) map[string]discoveryv1.EndpointConditions {
	t.Helper()
	out := map[string]discoveryv1.EndpointConditions{}
	for _, es := range c.EndpointSlices() {
		if es.Labels[discoveryv1.LabelServiceName] != svc {
			continue
		}
		for _, ep := range es.Endpoints {
			out[ep.TargetRef.Name] = ep.Conditions
		}
	}
	return out
}

// A deleted pod with a preStop sleep terminates (deletionTimestamp, its
// endpoint serving and terminating, not ready; gone from Endpoints) until
// FinishTermination; one without is removed at once.
func TestGracefulPodDeletion(t *testing.T) {
	c, clk := newCluster(t, 2)
	mustApply(t, c,
		makePod("default", "slow", preStopSleep(5, 30), func(p *corev1.Pod) { p.Labels["app"] = "web" }),
		makePod("default", "quick", func(p *corev1.Pod) { p.Labels["app"] = "web" }),
		makeService("default", "web"),
	)
	require.NoError(t, c.Delete("pod", "default", "quick"))
	_, err := c.Get("pod", "default", "quick")
	require.Error(t, err, "a pod without a preStop sleep goes at once")

	clk.now = t0.Add(time.Second)
	gen := c.Generation()
	require.NoError(t, c.Delete("pod", "default", "slow"))
	require.Greater(t, c.Generation(), gen)
	o, err := c.Get("pod", "default", "slow")
	require.NoError(t, err)
	p := o.(*corev1.Pod)
	require.NotNil(t, p.DeletionTimestamp)
	require.Equal(t, clk.now, p.DeletionTimestamp.Time)
	require.Equal(t, ptr.To[int64](30), p.DeletionGracePeriodSeconds)
	require.Equal(t, map[string]discoveryv1.EndpointConditions{
		"slow": {Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
	}, sliceConditions(t, c, "web"))
	for _, ep := range c.Endpoints() {
		if ep.Name == "web" {
			require.Empty(t, ep.Subsets, "Endpoints leave a terminating pod out")
		}
	}
	tms := c.Terminations()
	require.Equal(t, []Termination{{Namespace: "default", Name: "slow", UID: p.UID, Deadline: clk.now.Add(5 * time.Second)}}, tms)

	gen = c.Generation()
	require.NoError(t, c.Delete("pod", "default", "slow"), "deleting a terminating pod again")
	require.Equal(t, gen, c.Generation(), "changes nothing")
	require.NoError(t, c.FinishTermination("default", "slow", "another-uid"))
	_, err = c.Get("pod", "default", "slow")
	require.NoError(t, err, "another pod's termination leaves it")
	require.NoError(t, c.FinishTermination("default", "slow", p.UID))
	_, err = c.Get("pod", "default", "slow")
	require.Error(t, err)
	require.Empty(t, c.Terminations())
	require.Empty(t, sliceConditions(t, c, "web"))
}

// TerminationDelay is the longest preStop sleep, at most the grace period.
func TestTerminationDelay(t *testing.T) {
	for _, tc := range []struct {
		sleep, grace int64
		want         time.Duration
	}{{0, 30, 0}, {5, 30, 5 * time.Second}, {50, 10, 10 * time.Second}} {
		p := makePod("default", "p", preStopSleep(tc.sleep, tc.grace))
		require.Equal(t, tc.want, TerminationDelay(p), "sleep %d grace %d", tc.sleep, tc.grace)
	}
	require.Equal(t, time.Duration(0), TerminationDelay(makePod("default", "p")))
}

// A Deployment replaces a terminating pod at once; the terminating one
// stays until it finishes. Its scale-down terminates pods too.
func TestDeploymentReplacesTerminatingPod(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 2, func(d *appsv1.Deployment) {
		grace := int64(30)
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
		d.Spec.Template.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}
	}))
	pods := podsOf(c, "deployment/web")
	require.Len(t, pods, 2)
	require.NoError(t, c.Delete("pod", "default", pods[0].Name))
	after := podsOf(c, "deployment/web")
	require.Len(t, after, 3, "the terminating pod and its replacement")
	tms := c.Terminations()
	require.Len(t, tms, 1)
	require.Equal(t, pods[0].Name, tms[0].Name)
	require.NoError(t, c.FinishTermination("default", tms[0].Name, tms[0].UID))
	require.Len(t, podsOf(c, "deployment/web"), 2)

	require.NoError(t, c.Scale("deployment", "default", "web", 1))
	require.Len(t, podsOf(c, "deployment/web"), 2, "scaled down: one kept, one terminating")
	require.Len(t, c.Terminations(), 1)
	require.NoError(t, c.Scale("deployment", "default", "web", 1))
	require.Len(t, c.Terminations(), 1, "the terminating pod is no replica: nothing more goes")
}
