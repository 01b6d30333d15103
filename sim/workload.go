package sim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"
	"time"

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

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func setPodReady(p *corev1.Pod, ready bool, now time.Time) {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		found := false
		for i := range p.Status.Conditions {
			c := &p.Status.Conditions[i]
			if c.Type == typ {
				found = true
				if c.Status != st {
					c.Status = st
					c.LastTransitionTime = metav1.NewTime(now)
				}
			}
		}
		if !found {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: typ, Status: st, LastTransitionTime: metav1.NewTime(now)})
		}
	}
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = ready
	}
}

// defaultPodSpec fills the API server's defaults that matter for output.
func defaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	if s.TerminationGracePeriodSeconds == nil {
		v := int64(corev1.DefaultTerminationGracePeriodSeconds)
		s.TerminationGracePeriodSeconds = &v
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = corev1.ProtocolTCP
			}
			if s.HostNetwork && c.Ports[j].HostPort == 0 {
				c.Ports[j].HostPort = c.Ports[j].ContainerPort
			}
		}
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
			if img := c.Image; !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") || strings.HasSuffix(img, ":latest") {
				c.ImagePullPolicy = corev1.PullAlways
			}
		}
		if c.TerminationMessagePath == "" {
			c.TerminationMessagePath = corev1.TerminationMessagePathDefault
		}
		if c.TerminationMessagePolicy == "" {
			c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
		}
	}
}

// validatePodSpec checks what svcsim relies on: containers, their ports
// (TCP/UDP, unique names), and that a fixed nodeName exists.
func (t *txn) validatePodSpec(s *corev1.PodSpec, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	if len(s.Containers) == 0 {
		el = append(el, field.Required(fld.Child("containers"), ""))
	}
	names := map[string]bool{}
	portNames := map[string]bool{}
	for i, c := range s.Containers {
		cp := fld.Child("containers").Index(i)
		if c.Name == "" {
			el = append(el, field.Required(cp.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				el = append(el, field.Invalid(cp.Child("name"), c.Name, msg))
			}
			if names[c.Name] {
				el = append(el, field.Duplicate(cp.Child("name"), c.Name))
			}
			names[c.Name] = true
		}
		if strings.TrimSpace(c.Image) == "" {
			el = append(el, field.Required(cp.Child("image"), ""))
		}
		for j, p := range c.Ports {
			pp := cp.Child("ports").Index(j)
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					el = append(el, field.Invalid(pp.Child("name"), p.Name, msg))
				}
				if portNames[p.Name] {
					el = append(el, field.Duplicate(pp.Child("name"), p.Name))
				}
				portNames[p.Name] = true
			}
			if p.ContainerPort == 0 {
				el = append(el, field.Required(pp.Child("containerPort"), ""))
			} else {
				for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
					el = append(el, field.Invalid(pp.Child("containerPort"), p.ContainerPort, msg))
				}
			}
			switch p.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP:
			default:
				el = append(el, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"TCP", "UDP"}))
			}
		}
	}
	if s.NodeName != "" {
		if _, ok := t.nodes[s.NodeName]; !ok {
			el = append(el, field.Invalid(fld.Child("nodeName"), s.NodeName, "no such node in the simulated cluster"))
		}
	}
	el = append(el, validateLabels(s.NodeSelector, fld.Child("nodeSelector"))...)
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			el = append(el, field.Invalid(fld.Child("hostname"), s.Hostname, msg))
		}
	}
	if s.Subdomain != "" {
		for _, msg := range validation.IsDNS1123Label(s.Subdomain) {
			el = append(el, field.Invalid(fld.Child("subdomain"), s.Subdomain, msg))
		}
	}
	return el
}

func (t *txn) createPod(p *corev1.Pod) error {
	ki := kinds["Pod"]
	defaultPodSpec(&p.Spec)
	el := validateName(p.Name, validation.IsDNS1123Subdomain)
	el = append(el, validateLabels(p.Labels, field.NewPath("metadata", "labels"))...)
	el = append(el, t.validatePodSpec(&p.Spec, field.NewPath("spec"))...)
	if len(el) > 0 {
		return ki.invalid(p.Name, el)
	}
	t.addPod(p, "")
	return nil
}

// admitPod fills what the API server sets on a new pod beyond its spec's
// defaults: service links on (Pod defaulting), priority 0 with its
// preemption policy (Priority admission), the namespace's default
// ServiceAccount (ServiceAccount admission; svcsim mounts no token) and
// tolerations of not-ready and unreachable nodes for 300 s
// (DefaultTolerationSeconds admission); generation 1.
func admitPod(p *corev1.Pod) {
	s := &p.Spec
	if s.EnableServiceLinks == nil {
		v := corev1.DefaultEnableServiceLinks
		s.EnableServiceLinks = &v
	}
	if s.Priority == nil {
		v := int32(0)
		s.Priority = &v
	}
	if s.PreemptionPolicy == nil {
		v := corev1.PreemptLowerPriority
		s.PreemptionPolicy = &v
	}
	if s.ServiceAccountName == "" {
		s.ServiceAccountName = "default"
	}
	s.DeprecatedServiceAccount = s.ServiceAccountName
	for _, taint := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		has := false
		for _, tol := range s.Tolerations {
			if tol.Key == taint && (tol.Effect == "" || tol.Effect == corev1.TaintEffectNoExecute) {
				has = true
			}
		}
		if !has {
			secs := int64(300)
			s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: taint, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}
	if p.Generation == 0 {
		p.Generation = 1
	}
}

// addPod stores a new pod (bare or of a workload) and schedules it.
func (t *txn) addPod(p *corev1.Pod, owner string) {
	admitPod(p)
	p.Status = corev1.PodStatus{}
	kinds["Pod"].setTypeMeta(p)
	t.initMeta(&p.ObjectMeta, "Pod")
	k := key(p.Namespace, p.Name)
	t.s.Pods[k] = p
	if owner != "" {
		t.s.Owner[k] = owner
	}
	t.schedule(p)
}

func (t *txn) updatePod(old, p *corev1.Pod) error {
	if p.Spec.NodeName == "" {
		p.Spec.NodeName = old.Spec.NodeName
	}
	defaultPodSpec(&p.Spec)
	if !apiequality.Semantic.DeepEqual(old.Spec, p.Spec) {
		return kinds["Pod"].invalid(p.Name, field.ErrorList{field.Forbidden(field.NewPath("spec"),
			"pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")})
	}
	if el := validateLabels(p.Labels, field.NewPath("metadata", "labels")); len(el) > 0 {
		return kinds["Pod"].invalid(p.Name, el)
	}
	p.Status = old.Status
	t.s.Pods[key(p.Namespace, p.Name)] = p
	return nil
}

// schedule binds a pod to a node: its spec.nodeName, else the node with the
// fewest pods among those matching its nodeSelector (ties by name). A pod
// no node fits stays Pending until one does.
func (t *txn) schedule(p *corev1.Pod) {
	node := p.Spec.NodeName
	if node == "" {
		counts := map[string]int{}
		for _, q := range t.s.Pods {
			if q.Spec.NodeName != "" {
				counts[q.Spec.NodeName]++
			}
		}
		best := ""
		for _, n := range t.cfg.Nodes {
			if !selectorMatches(p.Spec.NodeSelector, t.s.NodeLabels[n.Name]) {
				continue
			}
			if _, lost := t.s.NodeLost[n.Name]; lost {
				continue // its unreachable:NoSchedule taint
			}
			if best == "" || counts[n.Name] < counts[best] || (counts[n.Name] == counts[best] && n.Name < best) {
				best = n.Name
			}
		}
		if best == "" {
			if p.Status.Phase == corev1.PodPending && len(p.Status.Conditions) == 1 &&
				p.Status.Conditions[0].Reason == corev1.PodReasonUnschedulable {
				return // still unschedulable; keep the condition's time
			}
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, LastTransitionTime: metav1.NewTime(t.now),
				Message: fmt.Sprintf("0/%d nodes are available: %d node(s) didn't match Pod's node affinity/selector.", len(t.cfg.Nodes), len(t.cfg.Nodes))}}
			return
		}
		node = best
	}
	n := t.nodes[node]
	var ip netip.Addr
	if p.Spec.HostNetwork {
		ip = n.IP
	} else {
		var ok bool
		if ip, ok = t.allocPodIP(n); !ok {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t.now)}}
			p.Status.Message = fmt.Sprintf("pod CIDR %v of node %s is full", n.PodCIDR, node)
			return
		}
	}
	p.Spec.NodeName = node
	now := metav1.NewTime(t.now)
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    n.IP.String(),
		HostIPs:   []corev1.HostIP{{IP: n.IP.String()}},
		PodIP:     ip.String(),
		PodIPs:    []corev1.PodIP{{IP: ip.String()}},
		StartTime: &now,
		QOSClass:  corev1.PodQOSBestEffort,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Started: ptrTo(true),
			ContainerID: "svcsim://" + string(p.UID)[:8] + "-" + c.Name,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	setPodReady(p, true, t.now)
	p.ResourceVersion = t.s.nextRV()
}

func ptrTo[T any](v T) *T { return &v }

func selectorMatches(sel, lbls map[string]string) bool {
	for k, v := range sel {
		if got, ok := lbls[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// allocPodIP hands out the next free address of the node's PodCIDR after
// the last one handed out (.1 is the bridge, .0 and the broadcast address
// are never used), like the CNI host-local IPAM.
func (t *txn) allocPodIP(n *NodeConfig) (netip.Addr, bool) {
	used := map[netip.Addr]bool{}
	for _, p := range t.s.Pods {
		if p.Spec.NodeName == n.Name && !p.Spec.HostNetwork {
			if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
				used[ip] = true
			}
		}
	}
	base := addrToU32(n.PodCIDR.Addr())
	size := uint32(1) << (32 - n.PodCIDR.Bits())
	first, count := uint32(2), size-3 // offsets 2 .. size-2
	start := uint32(0)
	if last, err := netip.ParseAddr(t.s.LastIP[n.Name]); err == nil && n.PodCIDR.Contains(last) {
		if off := addrToU32(last) - base; off >= first && off < first+count {
			start = off - first + 1
		}
	}
	for i := uint32(0); i < count; i++ {
		ip := u32ToAddr(base + first + (start+i)%count)
		if !used[ip] {
			t.s.LastIP[n.Name] = ip.String()
			return ip, true
		}
	}
	return netip.Addr{}, false
}

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
		if p.Labels[PodTemplateHashLabel] != hash {
			t.delete("Pod", p.Namespace, p.Name) // instant rollout
			continue
		}
		keep = append(keep, p)
	}
	want := int(*d.Spec.Replicas)
	for len(keep) > want {
		p := keep[len(keep)-1] // newest first
		t.delete("Pod", p.Namespace, p.Name)
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
