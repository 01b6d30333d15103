package printer

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/svcsim/svcsim/sim"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// lastApplied is the annotation kubectl describe leaves out.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// descWriter writes kubectl describe's layout: "Field:\tvalue" lines
// aligned by a tabwriter (kubectl's settings: tab width 8, padding 2),
// nested fields indented two spaces per level.
type descWriter struct{ tw *tabwriter.Writer }

func (d descWriter) line(level int, format string, args ...any) {
	fmt.Fprintf(d.tw, strings.Repeat("  ", level)+format+"\n", args...)
}

// multi writes a field with one value per line ("<none>" for none).
func (d descWriter) multi(level int, title string, values []string) {
	if len(values) == 0 {
		d.line(level, "%s:\t<none>", title)
		return
	}
	for i, v := range values {
		if i == 0 {
			d.line(level, "%s:\t%s", title, v)
		} else {
			d.line(level, "\t%s", v)
		}
	}
}

// mapLines lists a map as sorted k=v, leaving out skip.
func mapLines(m map[string]string, skip ...string) []string {
	var out []string
	for k, v := range m {
		if !containsString(skip, k) {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d descWriter) meta(m metav1.ObjectMeta, namespaced bool) {
	d.line(0, "Name:\t%s", m.Name)
	if namespaced {
		d.line(0, "Namespace:\t%s", m.Namespace)
	}
}

func (d descWriter) labelsAnnotations(m metav1.ObjectMeta) {
	d.multi(0, "Labels", mapLines(m.Labels))
	d.multi(0, "Annotations", mapLines(m.Annotations, lastApplied))
}

func describeTime(t metav1.Time) string {
	if t.IsZero() {
		return "<unset>"
	}
	return t.Time.Format(time.RFC1123Z)
}

// describable are the kinds describe knows.
var describable = map[string]bool{"Service": true, "Pod": true, "Node": true, "Endpoints": true}

// describe writes kubectl describe's account of one object: Service, Pod,
// Node and Endpoints with kubectl's layout and its important fields;
// svcsim records no events, so every account ends "Events: <none>".
func describe(w io.Writer, c *sim.Cluster, obj runtime.Object, now time.Time) error {
	d := descWriter{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	switch o := obj.(type) {
	case *corev1.Service:
		describeService(d, c, o)
	case *corev1.Pod:
		describePod(d, o)
	case *corev1.Node:
		describeNode(d, c, o, now)
	case *corev1.Endpoints:
		describeEndpoints(d, o)
	default:
		return fmt.Errorf("svcsim describes Services, Pods, Nodes and Endpoints, not %T", obj)
	}
	d.line(0, "Events:\t<none>")
	return d.tw.Flush()
}

func describeService(d descWriter, c *sim.Cluster, s *corev1.Service) {
	d.meta(s.ObjectMeta, true)
	d.labelsAnnotations(s.ObjectMeta)
	d.line(0, "Selector:\t%s", orNone(labels.FormatLabels(s.Spec.Selector)))
	d.line(0, "Type:\t%s", s.Spec.Type)
	if s.Spec.IPFamilyPolicy != nil {
		d.line(0, "IP Family Policy:\t%s", *s.Spec.IPFamilyPolicy)
	}
	if len(s.Spec.IPFamilies) > 0 {
		var fams []string
		for _, f := range s.Spec.IPFamilies {
			fams = append(fams, string(f))
		}
		d.line(0, "IP Families:\t%s", strings.Join(fams, ","))
	}
	if s.Spec.Type != corev1.ServiceTypeExternalName {
		d.line(0, "IP:\t%s", s.Spec.ClusterIP)
		if len(s.Spec.ClusterIPs) > 0 {
			d.line(0, "IPs:\t%s", strings.Join(s.Spec.ClusterIPs, ","))
		} else {
			d.line(0, "IPs:\t<none>")
		}
	}
	if len(s.Spec.ExternalIPs) > 0 {
		d.line(0, "External IPs:\t%s", strings.Join(s.Spec.ExternalIPs, ","))
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		var ing []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ing = append(ing, in.IP)
			} else if in.Hostname != "" {
				ing = append(ing, in.Hostname)
			}
		}
		if len(ing) > 0 {
			d.line(0, "LoadBalancer Ingress:\t%s", strings.Join(ing, ", "))
		}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		d.line(0, "External Name:\t%s", s.Spec.ExternalName)
	}
	var slices []discoveryv1.EndpointSlice
	for _, sl := range c.EndpointSlices() {
		if sl.Namespace == s.Namespace && sl.Labels[discoveryv1.LabelServiceName] == s.Name {
			slices = append(slices, sl)
		}
	}
	for _, p := range s.Spec.Ports {
		name := p.Name
		if name == "" {
			name = "<unset>"
		}
		d.line(0, "Port:\t%s  %d/%s", name, p.Port, p.Protocol)
		d.line(0, "TargetPort:\t%s/%s", targetPort(p.TargetPort), p.Protocol)
		if p.NodePort != 0 {
			d.line(0, "NodePort:\t%s  %d/%s", name, p.NodePort, p.Protocol)
		}
		d.line(0, "Endpoints:\t%s", sliceEndpointsForPort(slices, p.Name))
	}
	d.line(0, "Session Affinity:\t%s", s.Spec.SessionAffinity)
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && s.Spec.SessionAffinityConfig != nil &&
		s.Spec.SessionAffinityConfig.ClientIP != nil && s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != nil {
		d.line(0, "Session Affinity Timeout Seconds:\t%d", *s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds)
	}
	if s.Spec.ExternalTrafficPolicy != "" {
		d.line(0, "External Traffic Policy:\t%s", s.Spec.ExternalTrafficPolicy)
	}
	if s.Spec.InternalTrafficPolicy != nil {
		d.line(0, "Internal Traffic Policy:\t%s", *s.Spec.InternalTrafficPolicy)
	}
	if s.Spec.HealthCheckNodePort != 0 {
		d.line(0, "HealthCheck NodePort:\t%d", s.Spec.HealthCheckNodePort)
	}
	if len(s.Spec.LoadBalancerSourceRanges) > 0 {
		d.line(0, "LoadBalancer Source Ranges:\t%s", strings.Join(s.Spec.LoadBalancerSourceRanges, ","))
	}
}

func targetPort(tp intstr.IntOrString) string {
	if tp.Type == intstr.String {
		return tp.StrVal
	}
	if tp.IntVal == 0 {
		return "<unset>"
	}
	return strconv.Itoa(int(tp.IntVal))
}

// sliceEndpointsForPort lists the ready addresses of slices with the port
// named portName, as ip:port: at most three, then "+ N more..."; "<none>"
// when there are none.
func sliceEndpointsForPort(slices []discoveryv1.EndpointSlice, portName string) string {
	var list []string
	for _, sl := range slices {
		for _, p := range sl.Ports {
			pn := ""
			if p.Name != nil {
				pn = *p.Name
			}
			if pn != portName || p.Port == nil {
				continue
			}
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					list = append(list, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(list) == 0 {
		return "<none>"
	}
	return firstThree(list)
}

func describePod(d descWriter, p *corev1.Pod) {
	d.meta(p.ObjectMeta, true)
	prio := int32(0)
	if p.Spec.Priority != nil {
		prio = *p.Spec.Priority
	}
	d.line(0, "Priority:\t%d", prio)
	d.line(0, "Service Account:\t%s", p.Spec.ServiceAccountName)
	node := "<none>"
	if p.Spec.NodeName != "" {
		node = p.Spec.NodeName
		if p.Status.HostIP != "" {
			node += "/" + p.Status.HostIP
		}
	}
	d.line(0, "Node:\t%s", node)
	if p.Status.StartTime != nil {
		d.line(0, "Start Time:\t%s", describeTime(*p.Status.StartTime))
	}
	d.labelsAnnotations(p.ObjectMeta)
	status := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		status = "Terminating (lasts " + strconv.Itoa(int(deref(p.DeletionGracePeriodSeconds))) + "s)"
	}
	d.line(0, "Status:\t%s", status)
	if p.Status.Reason != "" {
		d.line(0, "Reason:\t%s", p.Status.Reason)
	}
	d.line(0, "IP:\t%s", p.Status.PodIP)
	if len(p.Status.PodIPs) == 0 {
		d.line(0, "IPs:\t<none>")
	} else {
		d.line(0, "IPs:")
		for _, ip := range p.Status.PodIPs {
			d.line(1, "IP:\t%s", ip.IP)
		}
	}
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			d.line(0, "Controlled By:\t%s/%s", ref.Kind, ref.Name)
		}
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, cs := range p.Status.ContainerStatuses {
		statuses[cs.Name] = cs
	}
	d.line(0, "Containers:")
	for _, ct := range p.Spec.Containers {
		d.line(1, "%s:", ct.Name)
		d.line(2, "Image:\t%s", ct.Image)
		var ports, hostPorts []string
		for _, cp := range ct.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", cp.ContainerPort, cp.Protocol))
			hostPorts = append(hostPorts, fmt.Sprintf("%d/%s", cp.HostPort, cp.Protocol))
		}
		switch len(ports) {
		case 0:
			d.line(2, "Port:\t<none>")
			d.line(2, "Host Port:\t<none>")
		case 1:
			d.line(2, "Port:\t%s", ports[0])
			d.line(2, "Host Port:\t%s", hostPorts[0])
		default:
			d.line(2, "Ports:\t%s", strings.Join(ports, ", "))
			d.line(2, "Host Ports:\t%s", strings.Join(hostPorts, ", "))
		}
		if len(ct.Command) > 0 {
			d.multi(2, "Command", ct.Command)
		}
		if len(ct.Args) > 0 {
			d.multi(2, "Args", ct.Args)
		}
		cs, ok := statuses[ct.Name]
		switch {
		case !ok:
			d.line(2, "State:\tWaiting")
		case cs.State.Running != nil:
			d.line(2, "State:\tRunning")
			d.line(3, "Started:\t%s", describeTime(cs.State.Running.StartedAt))
		case cs.State.Terminated != nil:
			d.line(2, "State:\tTerminated")
			d.line(3, "Reason:\t%s", cs.State.Terminated.Reason)
			d.line(3, "Exit Code:\t%d", cs.State.Terminated.ExitCode)
		case cs.State.Waiting != nil:
			d.line(2, "State:\tWaiting")
			if cs.State.Waiting.Reason != "" {
				d.line(3, "Reason:\t%s", cs.State.Waiting.Reason)
			}
		default:
			d.line(2, "State:\tWaiting")
		}
		d.line(2, "Ready:\t%s", titleBool(ok && cs.Ready))
		d.line(2, "Restart Count:\t%d", cs.RestartCount)
		for _, pr := range []struct {
			name  string
			probe *corev1.Probe
		}{{"Liveness", ct.LivenessProbe}, {"Readiness", ct.ReadinessProbe}, {"Startup", ct.StartupProbe}} {
			if pr.probe != nil {
				d.line(2, "%s:\t%s", pr.name, describeProbe(pr.probe))
			}
		}
		var env []string
		for _, e := range ct.Env {
			v := e.Value
			if e.ValueFrom != nil {
				v = "<set from a reference>"
			}
			env = append(env, e.Name+":\t"+v)
		}
		if len(env) == 0 {
			d.line(2, "Environment:\t<none>")
		} else {
			d.line(2, "Environment:")
			for _, e := range env {
				d.line(3, "%s", e)
			}
		}
		if len(ct.VolumeMounts) == 0 {
			d.line(2, "Mounts:\t<none>")
		} else {
			d.line(2, "Mounts:")
			for _, m := range ct.VolumeMounts {
				mode := "rw"
				if m.ReadOnly {
					mode = "ro"
				}
				d.line(3, "%s from %s (%s)", m.MountPath, m.Name, mode)
			}
		}
	}
	d.line(0, "Conditions:")
	d.line(1, "Type\tStatus")
	for _, cd := range p.Status.Conditions {
		d.line(1, "%s \t%s", cd.Type, cd.Status)
	}
	if len(p.Spec.Volumes) == 0 {
		d.line(0, "Volumes:\t<none>")
	} else {
		d.line(0, "Volumes:")
		for _, v := range p.Spec.Volumes {
			d.line(1, "%s:", v.Name)
		}
	}
	qos := string(p.Status.QOSClass)
	if qos == "" {
		qos = "BestEffort"
	}
	d.line(0, "QoS Class:\t%s", qos)
	d.multi(0, "Node-Selectors", mapLines(p.Spec.NodeSelector))
	var tols []string
	for _, t := range p.Spec.Tolerations {
		s := t.Key
		if t.Operator == corev1.TolerationOpEqual || t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if s == "" {
			s = "op=" + string(t.Operator)
		} else if t.Operator == corev1.TolerationOpExists {
			s += " op=Exists"
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		tols = append(tols, s)
	}
	d.multi(0, "Tolerations", tols)
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func titleBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// describeProbe renders a probe like kubectl: its action, then delay,
// timeout, period and thresholds.
func describeProbe(p *corev1.Probe) string {
	var action string
	switch {
	case p.HTTPGet != nil:
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		action = fmt.Sprintf("http-get %s://%s:%s%s", scheme, p.HTTPGet.Host, p.HTTPGet.Port.String(), p.HTTPGet.Path)
	case p.TCPSocket != nil:
		action = fmt.Sprintf("tcp-socket %s:%s", p.TCPSocket.Host, p.TCPSocket.Port.String())
	case p.Exec != nil:
		action = "exec " + fmt.Sprint(p.Exec.Command)
	case p.GRPC != nil:
		action = fmt.Sprintf("grpc <pod>:%d", p.GRPC.Port)
	default:
		action = "unknown"
	}
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		action, p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
}

func describeNode(d descWriter, c *sim.Cluster, n *corev1.Node, now time.Time) {
	d.meta(n.ObjectMeta, false)
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)
	d.line(0, "Roles:\t%s", orNone(strings.Join(roles, ",")))
	d.labelsAnnotations(n.ObjectMeta)
	d.line(0, "CreationTimestamp:\t%s", describeTime(n.CreationTimestamp))
	var taints []string
	for _, t := range n.Spec.Taints {
		taints = append(taints, t.ToString())
	}
	d.multi(0, "Taints", taints)
	d.line(0, "Unschedulable:\t%t", n.Spec.Unschedulable)
	d.line(0, "Conditions:")
	d.line(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
	d.line(1, "----\t------\t-----------------\t------------------\t------\t-------")
	for _, cd := range n.Status.Conditions {
		d.line(1, "%s \t%s \t%s \t%s \t%s \t%s", cd.Type, cd.Status, describeTime(cd.LastHeartbeatTime),
			describeTime(cd.LastTransitionTime), cd.Reason, cd.Message)
	}
	d.line(0, "Addresses:")
	for _, a := range n.Status.Addresses {
		d.line(1, "%s:\t%s", a.Type, a.Address)
	}
	for _, rl := range []struct {
		title string
		list  corev1.ResourceList
	}{{"Capacity", n.Status.Capacity}, {"Allocatable", n.Status.Allocatable}} {
		if len(rl.list) == 0 {
			continue
		}
		d.line(0, "%s:", rl.title)
		var names []string
		for k := range rl.list {
			names = append(names, string(k))
		}
		sort.Strings(names)
		for _, k := range names {
			q := rl.list[corev1.ResourceName(k)]
			d.line(1, "%s:\t%s", k, q.String())
		}
	}
	ni := n.Status.NodeInfo
	d.line(0, "System Info:")
	d.line(1, "Machine ID:\t%s", ni.MachineID)
	d.line(1, "System UUID:\t%s", ni.SystemUUID)
	d.line(1, "Boot ID:\t%s", ni.BootID)
	d.line(1, "Kernel Version:\t%s", ni.KernelVersion)
	d.line(1, "OS Image:\t%s", ni.OSImage)
	d.line(1, "Operating System:\t%s", ni.OperatingSystem)
	d.line(1, "Architecture:\t%s", ni.Architecture)
	d.line(1, "Container Runtime Version:\t%s", ni.ContainerRuntimeVersion)
	d.line(1, "Kubelet Version:\t%s", ni.KubeletVersion)
	if n.Spec.PodCIDR != "" {
		d.line(0, "PodCIDR:\t%s", n.Spec.PodCIDR)
	}
	if len(n.Spec.PodCIDRs) > 0 {
		d.line(0, "PodCIDRs:\t%s", strings.Join(n.Spec.PodCIDRs, ","))
	}
	var pods []corev1.Pod
	for _, p := range c.PodObjects() {
		if p.Spec.NodeName == n.Name && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			pods = append(pods, p)
		}
	}
	d.line(0, "Non-terminated Pods:\t(%d in total)", len(pods))
	d.line(1, "Namespace\tName\tAge")
	d.line(1, "---------\t----\t---")
	for _, p := range pods {
		d.line(1, "%s\t%s\t%s", p.Namespace, p.Name, Age(p.CreationTimestamp, now))
	}
}

func describeEndpoints(d descWriter, e *corev1.Endpoints) {
	d.meta(e.ObjectMeta, true)
	d.labelsAnnotations(e.ObjectMeta)
	if len(e.Subsets) == 0 {
		d.line(0, "Subsets:\t<none>")
	} else {
		d.line(0, "Subsets:")
	}
	for _, ss := range e.Subsets {
		var ready, notReady []string
		for _, a := range ss.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range ss.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
		d.line(1, "Addresses:\t%s", orNone(strings.Join(ready, ",")))
		d.line(1, "NotReadyAddresses:\t%s", orNone(strings.Join(notReady, ",")))
		if len(ss.Ports) == 0 {
			d.line(1, "Ports:\t<none>")
			continue
		}
		d.line(1, "Ports:")
		d.line(2, "Name\tPort\tProtocol")
		d.line(2, "----\t----\t--------")
		for _, p := range ss.Ports {
			name := p.Name
			if name == "" {
				name = "<unset>"
			}
			d.line(2, "%s\t%d\t%s", name, p.Port, p.Protocol)
		}
		d.line(0, "")
	}
}
