package printer

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// TableOptions shape a table.
type TableOptions struct {
	Wide          bool
	AllNamespaces bool
	// Now is the reference time for AGE.
	Now time.Time
	// Created is the cluster's creation time, the nodes' age.
	Created time.Time
	// NamePrefix goes before every NAME ("service/" when one get lists
	// several kinds, as kubectl does).
	NamePrefix string
}

// NewTabWriter returns a tabwriter with kubectl's settings.
func NewTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0) }

// Table writes objs of kind as kubectl's table.
func Table(w io.Writer, kind string, objs []runtime.Object, o TableOptions) error {
	tw := NewTabWriter(w)
	var header, wide []string
	switch kind {
	case "Pod":
		header, wide = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}, []string{"IP", "NODE", "NOMINATED NODE", "READINESS GATES"}
	case "Service":
		header, wide = []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}, []string{"SELECTOR"}
	case "Endpoints":
		header = []string{"NAME", "ENDPOINTS", "AGE"}
	case "Ingress":
		header = []string{"NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"}
	case "EndpointSlice":
		header = []string{"NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"}
	case "Deployment":
		header, wide = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}
	case "DaemonSet":
		header, wide = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}
	case "Node":
		header, wide = []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}, []string{"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"}
	case "Namespace":
		header = []string{"NAME", "STATUS", "AGE"}
	case "ConfigMap":
		header = []string{"NAME", "DATA", "AGE"}
	case "Secret":
		header = []string{"NAME", "TYPE", "DATA", "AGE"}
	case "ServiceAccount":
		header = []string{"NAME", "SECRETS", "AGE"}
	case "Role", "ClusterRole", "LimitRange":
		header = []string{"NAME", "CREATED AT"}
	case "RoleBinding", "ClusterRoleBinding":
		header, wide = []string{"NAME", "ROLE", "AGE"}, []string{"USERS", "GROUPS", "SERVICEACCOUNTS"}
	case "IngressClass":
		header = []string{"NAME", "CONTROLLER", "PARAMETERS", "AGE"}
	default:
		h, ok := gatewayHeaders[kind]
		if !ok {
			return fmt.Errorf("no table for kind %q", kind)
		}
		header, wide = h[0], h[1]
	}
	if o.Wide {
		header = append(header, wide...)
	}
	if o.AllNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, obj := range objs {
		var row, wideRow []string
		switch x := obj.(type) {
		case *corev1.Pod:
			row, wideRow = podRow(x, o.Now)
		case *corev1.Service:
			row, wideRow = serviceRow(x, o.Now)
		case *corev1.Endpoints:
			row = []string{x.Name, FormatEndpoints(x), Age(x.CreationTimestamp, o.Now)}
		case *networkingv1.Ingress:
			row = ingressRow(x, o.Now)
		case *discoveryv1.EndpointSlice:
			row = []string{x.Name, string(x.AddressType), FormatSlicePorts(x.Ports), FormatSliceEndpoints(x.Endpoints), Age(x.CreationTimestamp, o.Now)}
		case *appsv1.Deployment:
			row, wideRow = deploymentRow(x, o.Now)
		case *appsv1.DaemonSet:
			row, wideRow = daemonSetRow(x, o.Now)
		case *corev1.Node:
			row, wideRow = nodeRow(x, o.Now)
		case *corev1.Namespace:
			row = []string{x.Name, string(x.Status.Phase), Age(x.CreationTimestamp, o.Now)}
		default:
			if row, wideRow = storedRow(obj, o.Now); row != nil {
				break
			}
			if row, wideRow = gatewayRow(obj, o.Now); row != nil {
				break
			}
			return fmt.Errorf("no table for %T", obj)
		}
		if o.Wide {
			row = append(row, wideRow...)
		}
		row[0] = o.NamePrefix + row[0]
		if o.AllNamespaces {
			m, _ := meta.Accessor(obj)
			row = append([]string{m.GetNamespace()}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// Age renders the time since ts like kubectl ("11m", "18h", "7m41s").
func Age(ts metav1.Time, now time.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(ts.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func podRow(p *corev1.Pod, now time.Time) ([]string, []string) {
	ready, restarts := 0, int32(0)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
		restarts += cs.RestartCount
	}
	status := string(p.Status.Phase)
	if p.Status.Reason != "" {
		status = p.Status.Reason
	}
	if p.DeletionTimestamp != nil {
		status = "Terminating"
	}
	gates := "<none>"
	if n := len(p.Spec.ReadinessGates); n > 0 {
		gates = fmt.Sprintf("0/%d", n)
	}
	return []string{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), status, strconv.Itoa(int(restarts)), Age(p.CreationTimestamp, now)},
		[]string{orNone(p.Status.PodIP), orNone(p.Spec.NodeName), orNone(p.Status.NominatedNodeName), gates}
}

func serviceRow(s *corev1.Service, now time.Time) ([]string, []string) {
	clusterIP := orNone(s.Spec.ClusterIP)
	var ports []string
	for _, p := range s.Spec.Ports {
		if p.NodePort > 0 {
			ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	return []string{s.Name, string(s.Spec.Type), clusterIP, externalIP(s), orNone(strings.Join(ports, ",")), Age(s.CreationTimestamp, now)},
		[]string{orNone(labels.FormatLabels(s.Spec.Selector))}
}

func externalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(s.Spec.ExternalIPs) > 0 {
			return strings.Join(s.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	}
	return "<unknown>"
}

// FormatEndpoints renders Endpoints like kubectl: at most three ip:port,
// then "+ N more...".
func FormatEndpoints(ep *corev1.Endpoints) string {
	const max = 3
	var list []string
	more, count := false, 0
	add := func(s string) {
		count++
		if len(list) == max {
			more = true
			return
		}
		list = append(list, s)
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	if len(list) == 0 {
		return "<none>"
	}
	out := strings.Join(list, ",")
	if more {
		out = fmt.Sprintf("%s + %d more...", out, count-max)
	}
	return out
}

// FormatSlicePorts renders an EndpointSlice's ports like kubectl: at most
// three port numbers (a port's name, or "*", when it has none), then
// "+ N more..."; "<unset>" when there are none.
func FormatSlicePorts(ports []discoveryv1.EndpointPort) string {
	var list []string
	for _, p := range ports {
		s := "*"
		if p.Port != nil {
			s = strconv.Itoa(int(*p.Port))
		} else if p.Name != nil {
			s = *p.Name
		}
		list = append(list, s)
	}
	return firstThree(list)
}

// FormatSliceEndpoints renders an EndpointSlice's addresses like kubectl:
// at most three, then "+ N more..."; "<unset>" when there are none.
func FormatSliceEndpoints(eps []discoveryv1.Endpoint) string {
	var list []string
	for _, e := range eps {
		list = append(list, e.Addresses...)
	}
	return firstThree(list)
}

func firstThree(list []string) string {
	const max = 3
	if len(list) == 0 {
		return "<unset>"
	}
	if len(list) > max {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:max], ","), len(list)-max)
	}
	return strings.Join(list, ",")
}

func ingressRow(ing *networkingv1.Ingress, now time.Time) []string {
	var hosts []string
	for _, r := range ing.Spec.Rules {
		h := r.Host
		if h == "" {
			h = "*"
		}
		hosts = append(hosts, h)
	}
	hostStr := "*"
	if len(hosts) > 0 {
		if len(hosts) > 4 {
			hostStr = strings.Join(hosts[:4], ",") + fmt.Sprintf(" + %d more...", len(hosts)-4)
		} else {
			hostStr = strings.Join(hosts, ",")
		}
	}
	var addrs []string
	for _, in := range ing.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			addrs = append(addrs, in.IP)
		} else if in.Hostname != "" {
			addrs = append(addrs, in.Hostname)
		}
	}
	ports := "80"
	if len(ing.Spec.TLS) > 0 {
		ports = "80, 443"
	}
	// CLASS is spec.ingressClassName, as kubectl prints it: an Ingress
	// that names its class by the older annotation shows <none>.
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	return []string{ing.Name, class, hostStr, strings.Join(addrs, ","), ports, Age(ing.CreationTimestamp, now)}
}

func containersImages(s *corev1.PodSpec) (string, string) {
	var names, images []string
	for _, c := range s.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func deploymentRow(d *appsv1.Deployment, now time.Time) ([]string, []string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	names, images := containersImages(&d.Spec.Template.Spec)
	return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want), strconv.Itoa(int(d.Status.UpdatedReplicas)),
			strconv.Itoa(int(d.Status.AvailableReplicas)), Age(d.CreationTimestamp, now)},
		[]string{names, images, orNone(metav1.FormatLabelSelector(d.Spec.Selector))}
}

func daemonSetRow(ds *appsv1.DaemonSet, now time.Time) ([]string, []string) {
	st := ds.Status
	names, images := containersImages(&ds.Spec.Template.Spec)
	return []string{ds.Name, itoa(st.DesiredNumberScheduled), itoa(st.CurrentNumberScheduled), itoa(st.NumberReady),
			itoa(st.UpdatedNumberScheduled), itoa(st.NumberAvailable), orNone(labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector)),
			Age(ds.CreationTimestamp, now)},
		[]string{names, images, orNone(metav1.FormatLabelSelector(ds.Spec.Selector))}
}

func itoa(v int32) string { return strconv.Itoa(int(v)) }

func nodeRow(n *corev1.Node, now time.Time) ([]string, []string) {
	status := "NotReady"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			status = "Ready"
		}
	}
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	internal, external := "<none>", "<none>"
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP:
			if internal == "<none>" {
				internal = a.Address
			}
		case corev1.NodeExternalIP:
			if external == "<none>" {
				external = a.Address
			}
		}
	}
	ni := n.Status.NodeInfo
	return []string{n.Name, status, orNone(strings.Join(sortStrings(roles), ",")), Age(n.CreationTimestamp, now), ni.KubeletVersion},
		[]string{internal, external, orNone(ni.OSImage), orNone(ni.KernelVersion), orNone(ni.ContainerRuntimeVersion)}
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// storedRow is the table row of a stored kind (nil for others), with
// kubectl's columns.
func storedRow(obj runtime.Object, now time.Time) (row, wide []string) {
	createdAt := func(m metav1.ObjectMeta) string { return m.CreationTimestamp.UTC().Format(time.RFC3339) }
	bindingWide := func(subjects []rbacv1.Subject) []string {
		var users, groups, sas []string
		for _, s := range subjects {
			switch s.Kind {
			case rbacv1.UserKind:
				users = append(users, s.Name)
			case rbacv1.GroupKind:
				groups = append(groups, s.Name)
			case rbacv1.ServiceAccountKind:
				sas = append(sas, s.Namespace+"/"+s.Name)
			}
		}
		return []string{strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
	}
	switch x := obj.(type) {
	case *corev1.ConfigMap:
		return []string{x.Name, fmt.Sprint(len(x.Data) + len(x.BinaryData)), Age(x.CreationTimestamp, now)}, nil
	case *corev1.Secret:
		return []string{x.Name, string(x.Type), fmt.Sprint(len(x.Data)), Age(x.CreationTimestamp, now)}, nil
	case *corev1.ServiceAccount:
		return []string{x.Name, fmt.Sprint(len(x.Secrets)), Age(x.CreationTimestamp, now)}, nil
	case *rbacv1.Role:
		return []string{x.Name, createdAt(x.ObjectMeta)}, nil
	case *rbacv1.ClusterRole:
		return []string{x.Name, createdAt(x.ObjectMeta)}, nil
	case *corev1.LimitRange:
		return []string{x.Name, createdAt(x.ObjectMeta)}, nil
	case *rbacv1.RoleBinding:
		return []string{x.Name, x.RoleRef.Kind + "/" + x.RoleRef.Name, Age(x.CreationTimestamp, now)}, bindingWide(x.Subjects)
	case *rbacv1.ClusterRoleBinding:
		return []string{x.Name, x.RoleRef.Kind + "/" + x.RoleRef.Name, Age(x.CreationTimestamp, now)}, bindingWide(x.Subjects)
	case *networkingv1.IngressClass:
		params := "<none>"
		if p := x.Spec.Parameters; p != nil {
			params = p.Kind + "/" + p.Name
			if p.APIGroup != nil && *p.APIGroup != "" {
				params = p.Kind + "." + *p.APIGroup + "/" + p.Name
			}
		}
		return []string{x.Name, x.Spec.Controller, params, Age(x.CreationTimestamp, now)}, nil
	}
	return nil, nil
}
