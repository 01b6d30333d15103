package sim

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
