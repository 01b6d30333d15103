package sim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Labels the workload controllers put on their pods.
const (
	PodTemplateHashLabel        = "pod-template-hash"
	ControllerRevisionHashLabel = "controller-revision-hash"
	PodTemplateGenerationLabel  = "pod-template-generation"
)

// templateHash names a pod template like the Deployment controller's
// pod-template-hash: a 32-bit FNV hash, encoded in the safe alphabet.
func templateHash(tpl *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(tpl)
	h := fnv.New32a()
	h.Write(b)
	return utilrand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

func defaultTemplate(tpl *corev1.PodTemplateSpec) { defaultPodSpec(&tpl.Spec) }

func (t *txn) validateWorkload(kind, name string, sel *metav1.LabelSelector, tpl *corev1.PodTemplateSpec) field.ErrorList {
	el := validateName(name, validation.IsDNS1123Subdomain)
	sp := specPath.Child("selector")
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		el = append(el, field.Required(sp, ""))
	} else if s, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		el = append(el, field.Invalid(sp, sel, err.Error()))
	} else if !s.Matches(labels.Set(tpl.Labels)) {
		el = append(el, field.Invalid(specPath.Child("template", "metadata", "labels"), tpl.Labels, "`selector` does not match template `labels`"))
	}
	el = append(el, validateLabels(tpl.Labels, specPath.Child("template", "metadata", "labels"))...)
	el = append(el, t.validatePodSpec(&tpl.Spec, specPath.Child("template", "spec"))...)
	if tpl.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		el = append(el, field.NotSupported(specPath.Child("template", "spec", "restartPolicy"), tpl.Spec.RestartPolicy, []string{"Always"}))
	}
	return el
}

func defaultDeployment(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptrTo(int32(1))
	}
	if d.Spec.Strategy.Type == "" {
		d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType && d.Spec.Strategy.RollingUpdate == nil {
		q := intstr.FromString("25%")
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &q, MaxSurge: &q}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = ptrTo(int32(10))
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = ptrTo(int32(600))
	}
	defaultTemplate(&d.Spec.Template)
}

func (t *txn) validateDeployment(d, old *appsv1.Deployment) field.ErrorList {
	el := t.validateWorkload("Deployment", d.Name, d.Spec.Selector, &d.Spec.Template)
	if *d.Spec.Replicas < 0 {
		el = append(el, field.Invalid(specPath.Child("replicas"), *d.Spec.Replicas, "must be greater than or equal to 0"))
	}
	if old != nil && !apiequality.Semantic.DeepEqual(old.Spec.Selector, d.Spec.Selector) {
		el = append(el, field.Invalid(specPath.Child("selector"), d.Spec.Selector, "field is immutable"))
	}
	return el
}

func (t *txn) createDeployment(d *appsv1.Deployment) error {
	defaultDeployment(d)
	if el := t.validateDeployment(d, nil); len(el) > 0 {
		return kinds["Deployment"].invalid(d.Name, el)
	}
	d.Status = appsv1.DeploymentStatus{}
	t.initMeta(&d.ObjectMeta, "Deployment")
	d.Generation = 1
	t.s.Deployments[key(d.Namespace, d.Name)] = d
	return nil
}

func (t *txn) updateDeployment(old, d *appsv1.Deployment) error {
	defaultDeployment(d)
	if el := t.validateDeployment(d, old); len(el) > 0 {
		return kinds["Deployment"].invalid(d.Name, el)
	}
	d.Generation = old.Generation
	if !apiequality.Semantic.DeepEqual(old.Spec, d.Spec) {
		d.Generation++
	}
	d.Status = old.Status
	t.s.Deployments[key(d.Namespace, d.Name)] = d
	return nil
}

func defaultDaemonSet(ds *appsv1.DaemonSet) {
	if ds.Spec.UpdateStrategy.Type == "" {
		ds.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && ds.Spec.UpdateStrategy.RollingUpdate == nil {
		one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
		ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}
	}
	if ds.Spec.RevisionHistoryLimit == nil {
		ds.Spec.RevisionHistoryLimit = ptrTo(int32(10))
	}
	defaultTemplate(&ds.Spec.Template)
}

func (t *txn) createDaemonSet(ds *appsv1.DaemonSet) error {
	defaultDaemonSet(ds)
	if el := t.validateWorkload("DaemonSet", ds.Name, ds.Spec.Selector, &ds.Spec.Template); len(el) > 0 {
		return kinds["DaemonSet"].invalid(ds.Name, el)
	}
	ds.Status = appsv1.DaemonSetStatus{}
	t.initMeta(&ds.ObjectMeta, "DaemonSet")
	ds.Generation = 1
	t.s.DaemonSets[key(ds.Namespace, ds.Name)] = ds
	return nil
}

func (t *txn) updateDaemonSet(old, ds *appsv1.DaemonSet) error {
	defaultDaemonSet(ds)
	el := t.validateWorkload("DaemonSet", ds.Name, ds.Spec.Selector, &ds.Spec.Template)
	if !apiequality.Semantic.DeepEqual(old.Spec.Selector, ds.Spec.Selector) {
		el = append(el, field.Invalid(specPath.Child("selector"), ds.Spec.Selector, "field is immutable"))
	}
	if len(el) > 0 {
		return kinds["DaemonSet"].invalid(ds.Name, el)
	}
	ds.Generation = old.Generation
	if !apiequality.Semantic.DeepEqual(old.Spec, ds.Spec) {
		ds.Generation++
	}
	ds.Status = old.Status
	t.s.DaemonSets[key(ds.Namespace, ds.Name)] = ds
	return nil
}

// ownedPods returns the pods of owner, oldest first.
func (t *txn) ownedPods(owner string) []*corev1.Pod {
	var out []*corev1.Pod
	for k, o := range t.s.Owner {
		if o == owner {
			if p := t.s.Pods[k]; p != nil {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return t.s.Seq["Pod/"+key(out[i].Namespace, out[i].Name)] < t.s.Seq["Pod/"+key(out[j].Namespace, out[j].Name)]
	})
	return out
}

func splitOwner(o string) (kind, ns, name string) {
	parts := strings.SplitN(o, "/", 3)
	if len(parts) != 3 {
		return "", "", ""
	}
	return parts[0], parts[1], parts[2]
}

// newPodFromTemplate makes a workload's pod, with a fresh unique name.
func (t *txn) newPodFromTemplate(ns, prefix string, tpl *corev1.PodTemplateSpec, ref metav1.OwnerReference, extra map[string]string) *corev1.Pod {
	name := ""
	for {
		name = prefix + t.s.suffix(5)
		if t.s.Pods[key(ns, name)] == nil {
			break
		}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			GenerateName:    prefix,
			Labels:          mergeLabels(tpl.Labels, extra),
			Annotations:     copyLabels(tpl.Annotations),
			OwnerReferences: []metav1.OwnerReference{ref},
		},
		Spec: *tpl.Spec.DeepCopy(),
	}
	return p
}

func (t *txn) reconcileDeployment(k string, d *appsv1.Deployment) {
	owner := "deployment/" + k
	hash := templateHash(&d.Spec.Template)
	var keep []*corev1.Pod
	for _, p := range t.ownedPods(owner) {
		if p.DeletionTimestamp != nil {
			continue // terminating: no longer a replica
		}
		if p.Labels[PodTemplateHashLabel] != hash {
			t.deletePod(p) // instant rollout
			continue
		}
		keep = append(keep, p)
	}
	want := int(*d.Spec.Replicas)
	for len(keep) > want {
		p := keep[len(keep)-1] // newest first
		t.deletePod(p)
		keep = keep[:len(keep)-1]
	}
	ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d.Name + "-" + hash,
		UID: d.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}
	for len(keep) < want {
		p := t.newPodFromTemplate(d.Namespace, d.Name+"-"+hash+"-", &d.Spec.Template, ref, map[string]string{PodTemplateHashLabel: hash})
		t.addPod(p, owner)
		keep = append(keep, p)
	}
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation}
	for _, p := range keep {
		st.Replicas++
		st.UpdatedReplicas++
		if podReady(p) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
	}
	st.UnavailableReplicas = st.Replicas - st.AvailableReplicas
	avail := corev1.ConditionFalse
	if st.AvailableReplicas >= *d.Spec.Replicas {
		avail = corev1.ConditionTrue
	}
	st.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: avail,
		Reason: map[bool]string{true: "MinimumReplicasAvailable", false: "MinimumReplicasUnavailable"}[avail == corev1.ConditionTrue]}}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == avail {
			st.Conditions[0].LastTransitionTime, st.Conditions[0].LastUpdateTime = c.LastTransitionTime, c.LastUpdateTime
		}
	}
	if st.Conditions[0].LastTransitionTime.IsZero() {
		st.Conditions[0].LastTransitionTime = metav1.NewTime(t.now)
		st.Conditions[0].LastUpdateTime = metav1.NewTime(t.now)
	}
	d.Status = st
}

func (t *txn) reconcileDaemonSet(k string, ds *appsv1.DaemonSet) {
	owner := "daemonset/" + k
	hash := templateHash(&ds.Spec.Template)
	byNode := map[string][]*corev1.Pod{}
	for _, p := range t.ownedPods(owner) {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name,
		UID: ds.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation}
	for _, n := range t.cfg.Nodes {
		pods := byNode[n.Name]
		if !selectorMatches(ds.Spec.Template.Spec.NodeSelector, t.s.NodeLabels[n.Name]) {
			for _, p := range pods {
				t.delete("Pod", p.Namespace, p.Name)
			}
			continue
		}
		st.DesiredNumberScheduled++
		var cur *corev1.Pod
		for _, p := range pods {
			if cur == nil && p.Labels[ControllerRevisionHashLabel] == hash {
				cur = p
				continue
			}
			t.delete("Pod", p.Namespace, p.Name)
		}
		if cur == nil {
			cur = t.newPodFromTemplate(ds.Namespace, ds.Name+"-", &ds.Spec.Template, ref, map[string]string{
				ControllerRevisionHashLabel: hash, PodTemplateGenerationLabel: fmt.Sprint(ds.Generation)})
			cur.Spec.NodeName = n.Name
			t.addPod(cur, owner)
		}
		st.CurrentNumberScheduled++
		st.UpdatedNumberScheduled++
		if podReady(cur) {
			st.NumberReady++
			st.NumberAvailable++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	ds.Status = st
}

// reconcileWorkloads runs the scheduler for pending pods and the
// Deployment and DaemonSet controllers.
func (t *txn) reconcileWorkloads() {
	var pending []*corev1.Pod
	for _, p := range t.s.Pods {
		if p.Spec.NodeName == "" || p.Status.PodIP == "" {
			pending = append(pending, p)
		}
	}
	sort.Slice(pending, func(i, j int) bool {
		return t.s.Seq["Pod/"+key(pending[i].Namespace, pending[i].Name)] < t.s.Seq["Pod/"+key(pending[j].Namespace, pending[j].Name)]
	})
	for _, p := range pending {
		t.schedule(p)
	}
	for _, k := range sortedKeys(t.s.Deployments) {
		t.reconcileDeployment(k, t.s.Deployments[k])
	}
	for _, k := range sortedKeys(t.s.DaemonSets) {
		t.reconcileDaemonSet(k, t.s.DaemonSets[k])
	}
}

// MaxPods bounds the pods the model runs at once. The workload controllers
// build every pod of a change in one transaction, so without a bound one
// "replicas: 2000000000" would take the process's memory and hours of CPU;
// the genuine API server has no such limit (its controllers create pods at
// a bounded rate instead).
const MaxPods = 4096

// checkPodBudget refuses a state whose workloads would need more than
// MaxPods pods: every Deployment's replicas, every DaemonSet on every node
// and every pod no controller owns.
func (t *txn) checkPodBudget() error {
	var want int64
	for _, d := range t.s.Deployments {
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 0 {
			want += int64(*d.Spec.Replicas)
		}
	}
	want += int64(len(t.s.DaemonSets)) * int64(len(t.cfg.Nodes))
	for _, p := range t.s.Pods {
		if metav1.GetControllerOf(p) == nil {
			want++
		}
	}
	if want > MaxPods {
		return fmt.Errorf("the workloads would need %d pods (Deployments' replicas, DaemonSets on every node, pods of their own); svcsim's model runs at most %d", want, MaxPods)
	}
	return nil
}
