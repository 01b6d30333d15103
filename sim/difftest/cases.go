package difftest

import "strings"

// svc is a Service manifest named name with spec (YAML, unindented).
func svc(name, spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n" + indent(spec)
}

// svcMeta is a Service with extra metadata lines (YAML under metadata:).
func svcMeta(name, meta, spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n" + indent(meta) + "spec:\n" + indent(spec)
}

func endpoints(name, subsets string) string {
	return "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: " + name + "\nsubsets:\n" + indent(subsets)
}

func slice(name, body string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " + name +
		"\n  labels:\n    kubernetes.io/service-name: " + name + "\n" + body
}

func pod(name, spec string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  labels:\n    app: " + name + "\nspec:\n" + indent(spec)
}

func deployment(name, spec string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + name + "\nspec:\n" + indent(spec)
}

// ingress is an Ingress named web with one rule for host whose one path
// (of pathType) goes to Service web port 80; tls, when not "", is its
// spec.tls (YAML, unindented).
func ingress(host, path, pathType, tls string) string {
	m := "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n"
	if tls != "" {
		m += "  tls:\n" + indent(tls)
	}
	m += "  rules:\n  - "
	if host != "" {
		m += "host: " + host + "\n    "
	}
	m += "http:\n      paths:\n      - path: " + path + "\n"
	if pathType != "" {
		m += "        pathType: " + pathType + "\n"
	}
	return m + "        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
}

// secret is a Secret named name of type typ with data (YAML, unindented).
func secret(name, typ, data string) string {
	return "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + name + "\ntype: " + typ + "\ndata:\n" + indent(data)
}

func indent(s string) string {
	var b strings.Builder
	for l := range strings.Lines(strings.TrimRight(s, "\n") + "\n") {
		b.WriteString("  " + l)
	}
	return b.String()
}

const port80 = "selector:\n  app: web\nports:\n- port: 80\n  targetPort: 8080\n"

const container = "containers:\n- name: web\n  image: registry.k8s.io/e2e-test-images/agnhost:2.53\n"

// Cases is the table.
var Cases = []Case{
	// Services: types, ports, defaults.
	{Name: "service/clusterip", Manifest: svc("web", port80)},
	{Name: "service/no-ports", Manifest: svc("web", "selector:\n  app: web\n"),
		Want: `Service "web" is invalid: spec.ports: Required value`},
	{Name: "service/port-0", Manifest: svc("web", "ports:\n- port: 0\n"),
		Want: `Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]`},
	{Name: "service/port-70000", Manifest: svc("web", "ports:\n- port: 70000\n  targetPort: 80\n"),
		Want: `Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive`},
	{Name: "service/targetport-70000", Manifest: svc("web", "ports:\n- port: 80\n  targetPort: 70000\n"),
		Want: `Service "web" is invalid: spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive`},
	{Name: "service/targetport-named", Manifest: svc("web", "selector:\n  app: web\nports:\n- port: 80\n  targetPort: http\n")},
	{Name: "service/targetport-bad-name", Manifest: svc("web", "ports:\n- port: 80\n  targetPort: Http_1\n"),
		Want: `Service "web" is invalid: spec.ports[0].targetPort: Invalid value: "Http_1": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`},
	{Name: "service/protocol-udp", Manifest: svc("web", "ports:\n- port: 53\n  protocol: UDP\n")},
	{Name: "service/protocol-sctp", Manifest: svc("web", "ports:\n- port: 80\n  protocol: SCTP\n"),
		Model: `Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "SCTP": supported values: "TCP", "UDP"`,
		Why:   "svcsim's datapaths carry TCP and UDP only; accepting SCTP would program nothing"},
	{Name: "service/protocol-icmp", Manifest: svc("web", "ports:\n- port: 80\n  protocol: ICMP\n"),
		Want: `Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`},
	{Name: "service/duplicate-port", Manifest: svc("web", "ports:\n- name: a\n  port: 80\n- name: b\n  port: 80\n"),
		Want: `Service "web" is invalid: spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":80,"TargetPort":0,"NodePort":0}`},
	{Name: "service/same-port-tcp-udp", Manifest: svc("dns", "ports:\n- name: dns\n  port: 53\n  protocol: UDP\n- name: dns-tcp\n  port: 53\n  protocol: TCP\n")},
	{Name: "service/multiport-unnamed", Manifest: svc("web", "ports:\n- name: http\n  port: 80\n- port: 443\n"),
		Want: `Service "web" is invalid: spec.ports[1].name: Required value`},
	{Name: "service/duplicate-port-name", Manifest: svc("web", "ports:\n- name: http\n  port: 80\n- name: http\n  port: 81\n"),
		Want: `Service "web" is invalid: spec.ports[1].name: Duplicate value: "http"`},
	{Name: "service/port-name-uppercase", Manifest: svc("web", "ports:\n- name: HTTP\n  port: 80\n"),
		Want: `Service "web" is invalid: spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	{Name: "service/unknown-type", Manifest: svc("web", "type: Cloud\nports:\n- port: 80\n"),
		Want: `Service "web" is invalid: spec.type: Unsupported value: "Cloud": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"`},

	// NodePorts.
	{Name: "nodeport/explicit", Manifest: svc("web", "type: NodePort\n"+port80+"  nodePort: 30080\n")},
	{Name: "nodeport/allocated", Manifest: svc("web", "type: NodePort\n"+port80)},
	{Name: "nodeport/40000", Manifest: svc("web", "type: NodePort\nports:\n- port: 80\n  nodePort: 40000\n"),
		Want: `Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`},
	{Name: "nodeport/29999", Manifest: svc("web", "type: NodePort\nports:\n- port: 80\n  nodePort: 29999\n"),
		Want: `Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767`},
	{Name: "nodeport/70000", Manifest: svc("web", "type: NodePort\nports:\n- port: 80\n  nodePort: 70000\n"),
		Want: `Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 70000: provided port is not in the valid range. The range of valid ports is 30000-32767`},
	{Name: "nodeport/duplicate", Manifest: svc("web", "type: NodePort\nports:\n- name: a\n  port: 80\n  nodePort: 30081\n- name: b\n  port: 81\n  nodePort: 30081\n"),
		Want: `Service "web" is invalid: spec.ports[1].nodePort: Invalid value: 30081: provided port is already allocated`},
	{Name: "nodeport/same-tcp-udp", Manifest: svc("dns", "type: NodePort\nports:\n- name: a\n  port: 53\n  protocol: UDP\n  nodePort: 30053\n- name: b\n  port: 53\n  protocol: TCP\n  nodePort: 30053\n")},
	{Name: "nodeport/taken", Setup: []string{svc("first", "type: NodePort\nports:\n- port: 80\n  nodePort: 30082\n")},
		Manifest: svc("second", "type: NodePort\nports:\n- port: 80\n  nodePort: 30082\n"),
		Want:     `Service "second" is invalid: spec.ports[0].nodePort: Invalid value: 30082: provided port is already allocated`},
	{Name: "nodeport/40000-and-bad-port-name", Manifest: svc("web", "type: NodePort\nports:\n- name: HTTP\n  port: 80\n  nodePort: 40000\n"),
		Want: `Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`},
	{Name: "nodeport/taken-and-bad-label", Setup: []string{svc("first", "type: NodePort\nports:\n- port: 80\n  nodePort: 30084\n")},
		Manifest: svcMeta("second", "labels:\n  a b: x\n", "type: NodePort\nports:\n- port: 80\n  nodePort: 30084\n"),
		Want:     `Service "second" is invalid: spec.ports[0].nodePort: Invalid value: 30084: provided port is already allocated`},
	{Name: "clusterip/taken-and-port-0", Setup: []string{svc("first", "clusterIP: 10.96.0.55\n"+port80)},
		Manifest: svc("second", "clusterIP: 10.96.0.55\nports:\n- port: 0\n"),
		Want:     `Service "second" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.55"]: failed to allocate IP 10.96.0.55: provided IP is already allocated`},
	{Name: "clusterip/broadcast", Manifest: svc("web", "clusterIP: 10.111.255.255\n"+port80), Want: `Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.111.255.255"]: failed to allocate IP 10.111.255.255: the provided network does not match the current range`},
	{Name: "clusterip/ipv6-and-bad-name", Manifest: svc("Web", "clusterIP: fd00::1\n"+port80), Want: `Service "Web" is invalid: spec.clusterIPs[0]: Invalid value: ["fd00::1"]: IPv6 is not configured on this cluster`},
	{Name: "nodeport/on-clusterip", Manifest: svc("web", "ports:\n- port: 80\n  nodePort: 30083\n"),
		Want: "Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"},
	{Name: "nodeport/headless", Manifest: svc("web", "type: NodePort\nclusterIP: None\nports:\n- port: 80\n"),
		Want: `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services`},
	{Name: "loadbalancer/basic", Manifest: svc("web", "type: LoadBalancer\n"+port80)},
	{Name: "loadbalancer/no-nodeports", Manifest: svc("web", "type: LoadBalancer\nallocateLoadBalancerNodePorts: false\n"+port80)},
	{Name: "loadbalancer/local", Manifest: svc("web", "type: LoadBalancer\nexternalTrafficPolicy: Local\n"+port80)},
	{Name: "loadbalancer/source-ranges", Manifest: svc("web", "type: LoadBalancer\nloadBalancerSourceRanges:\n- 203.0.113.0/24\n"+port80)},
	{Name: "loadbalancer/bad-source-range", Manifest: svc("web", "type: LoadBalancer\nloadBalancerSourceRanges:\n- 10.0.0.0/33\n"+port80),
		Want: `Service "web" is invalid: spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`},

	// ClusterIPs.
	{Name: "clusterip/headless", Manifest: svc("web", "clusterIP: None\n"+port80)},
	{Name: "clusterip/headless-no-ports", Manifest: svc("web", "clusterIP: None\nselector:\n  app: web\n")},
	{Name: "clusterip/explicit", Manifest: svc("web", "clusterIP: 10.96.0.50\n"+port80)},
	{Name: "clusterip/out-of-range", Manifest: svc("web", "clusterIP: 10.112.0.1\n"+port80),
		Want: `Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.112.0.1"]: failed to allocate IP 10.112.0.1: the provided network does not match the current range`},
	{Name: "clusterip/network-address", Manifest: svc("web", "clusterIP: 10.96.0.0\n"+port80),
		Want: `Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.0"]: failed to allocate IP 10.96.0.0: the provided network does not match the current range`},
	{Name: "clusterip/not-an-ip", Manifest: svc("web", "clusterIP: ten\n"+port80),
		Want: `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "ten": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
	{Name: "clusterip/ipv6", Manifest: svc("web", "clusterIP: fd00::1\n"+port80),
		Want: `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["fd00::1"]: IPv6 is not configured on this cluster`},
	{Name: "clusterip/taken", Setup: []string{svc("first", "clusterIP: 10.96.0.51\n"+port80)},
		Manifest: svc("second", "clusterIP: 10.96.0.51\n"+port80),
		Want:     `Service "second" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.51"]: failed to allocate IP 10.96.0.51: provided IP is already allocated`},
	{Name: "clusterip/kubernetes-service", Manifest: svc("web", "clusterIP: 10.96.0.1\n"+port80),
		Want: `Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.1"]: failed to allocate IP 10.96.0.1: provided IP is already allocated`},
	{Name: "clusterip/change", Setup: []string{svc("web", "clusterIP: 10.96.0.52\n"+port80)},
		Manifest: svc("web", "clusterIP: 10.96.0.53\n"+port80),
		Want:     `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.0.53"]: may not change once set`},

	// ExternalName.
	{Name: "externalname/basic", Manifest: svc("db", "type: ExternalName\nexternalName: db.example.com\n")},
	{Name: "externalname/trailing-dot", Manifest: svc("db", "type: ExternalName\nexternalName: db.example.com.\n")},
	{Name: "externalname/with-ports", Manifest: svc("db", "type: ExternalName\nexternalName: db.example.com\nports:\n- port: 5432\n")},
	{Name: "externalname/missing", Manifest: svc("db", "type: ExternalName\n"),
		Want: `Service "db" is invalid: spec.externalName: Required value`},
	{Name: "externalname/underscore", Manifest: svc("db", "type: ExternalName\nexternalName: db_1.example.com\n"),
		Want: `Service "db" is invalid: spec.externalName: Invalid value: "db_1.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "externalname/shell", Manifest: svc("db", "type: ExternalName\nexternalName: \"$(reboot);x\"\n"),
		Want: `Service "db" is invalid: spec.externalName: Invalid value: "$(reboot);x": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "externalname/too-long", Manifest: svc("db", "type: ExternalName\nexternalName: "+strings.Repeat("a.", 127)+"com\n"),
		Want: `Service "db" is invalid: spec.externalName: Invalid value: "` + strings.Repeat("a.", 127) + `com": must be no more than 253 characters`},
	{Name: "externalname/ip", Manifest: svc("db", "type: ExternalName\nexternalName: 192.0.2.10\n")},
	{Name: "externalname/with-clusterip", Manifest: svc("db", "type: ExternalName\nexternalName: db.example.com\nclusterIP: 10.96.0.54\n"),
		Want: `Service "db" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services`},

	// Session affinity.
	{Name: "affinity/clientip", Manifest: svc("web", "sessionAffinity: ClientIP\n"+port80)},
	{Name: "affinity/timeout-86400", Manifest: svc("web", "sessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 86400\n"+port80)},
	{Name: "affinity/timeout-0", Manifest: svc("web", "sessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 0\n"+port80),
		Want: `Service "web" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400`},
	{Name: "affinity/timeout-86401", Manifest: svc("web", "sessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 86401\n"+port80),
		Want: `Service "web" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400`},
	{Name: "affinity/config-without-affinity", Manifest: svc("web", "sessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 60\n"+port80)},
	{Name: "affinity/unknown", Manifest: svc("web", "sessionAffinity: Sticky\n"+port80),
		Want: `Service "web" is invalid: spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"`},

	// Traffic policies and IP families.
	{Name: "traffic/external-local-nodeport", Manifest: svc("web", "type: NodePort\nexternalTrafficPolicy: Local\n"+port80)},
	{Name: "traffic/external-local-clusterip", Manifest: svc("web", "externalTrafficPolicy: Local\n"+port80),
		Want: `Service "web" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`},
	{Name: "traffic/external-unknown", Manifest: svc("web", "type: NodePort\nexternalTrafficPolicy: Nearest\n"+port80),
		Want: `Service "web" is invalid: spec.externalTrafficPolicy: Unsupported value: "Nearest": supported values: "Cluster", "Local"`},
	{Name: "traffic/internal-local", Manifest: svc("web", "internalTrafficPolicy: Local\n"+port80)},
	{Name: "traffic/internal-unknown", Manifest: svc("web", "internalTrafficPolicy: Nearest\n"+port80),
		Want: `Service "web" is invalid: spec.internalTrafficPolicy: Unsupported value: "Nearest": supported values: "Cluster", "Local"`},
	{Name: "traffic/health-check-port-on-cluster", Manifest: svc("web", "type: LoadBalancer\nhealthCheckNodePort: 30090\n"+port80),
		Want: `Service "web" is invalid: spec.healthCheckNodePort: Invalid value: 30090: may only be set when ` + "`type`" + ` is 'LoadBalancer' and ` + "`externalTrafficPolicy`" + ` is 'Local'`},
	{Name: "ipfamily/ipv4", Manifest: svc("web", "ipFamilies: [IPv4]\n"+port80)},
	{Name: "ipfamily/prefer-dual", Manifest: svc("web", "ipFamilyPolicy: PreferDualStack\n"+port80)},
	{Name: "ipfamily/ipv6", Manifest: svc("web", "ipFamilies: [IPv6]\n"+port80),
		Want: `Service "web" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster`},
	{Name: "ipfamily/require-dual", Manifest: svc("web", "ipFamilyPolicy: RequireDualStack\n"+port80),
		Want: `Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services`},
	{Name: "ipfamily/unknown-policy", Manifest: svc("web", "ipFamilyPolicy: Sometimes\n"+port80),
		Want: `Service "web" is invalid: spec.ipFamilyPolicy: Unsupported value: "Sometimes": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"`},

	// External IPs.
	{Name: "externalips/valid", Manifest: svc("web", "externalIPs:\n- 198.51.100.10\n"+port80)},
	{Name: "externalips/loopback", Manifest: svc("web", "externalIPs:\n- 127.0.0.1\n"+port80),
		Want: `Service "web" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
	{Name: "externalips/unspecified", Manifest: svc("web", "externalIPs:\n- 0.0.0.0\n"+port80),
		Want: `Service "web" is invalid: spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)`},
	{Name: "externalips/not-an-ip", Manifest: svc("web", "externalIPs:\n- nowhere\n"+port80),
		Want: `Service "web" is invalid: spec.externalIPs[0]: Invalid value: "nowhere": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},

	// Names, labels, annotations, selectors.
	{Name: "meta/name-uppercase", Manifest: svc("Web", port80),
		Want: `Service "Web" is invalid: metadata.name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	{Name: "meta/name-digit-first", Manifest: svc("1web", port80)},
	{Name: "meta/name-64", Manifest: svc("w"+strings.Repeat("x", 63), port80),
		Want: `Service "w` + strings.Repeat("x", 63) + `" is invalid: metadata.name: Invalid value: "w` + strings.Repeat("x", 63) + `": must be no more than 63 characters`},
	{Name: "meta/labels", Manifest: svcMeta("web", "labels:\n  app.kubernetes.io/name: web\n  tier: \"\"\n", port80)},
	{Name: "meta/label-key-space", Manifest: svcMeta("web", "labels:\n  a b: x\n", port80),
		Want: `Service "web" is invalid: metadata.labels: Invalid value: "a b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
	{Name: "meta/label-value-shell", Manifest: svcMeta("web", "labels:\n  a: \"$(reboot)\"\n", port80),
		Want: `Service "web" is invalid: metadata.labels: Invalid value: "$(reboot)": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
	{Name: "meta/label-value-64", Manifest: svcMeta("web", "labels:\n  a: "+strings.Repeat("v", 64)+"\n", port80),
		Want: `Service "web" is invalid: metadata.labels: Invalid value: "` + strings.Repeat("v", 64) + `": must be no more than 63 bytes`},
	{Name: "meta/annotations-free-text", Manifest: svcMeta("web", "annotations:\n  note: \"a\\nb; $(reboot) `id` \\\"q\\\" ☃\"\n", port80)},
	{Name: "meta/annotation-key-shell", Manifest: svcMeta("web", "annotations:\n  \"$(reboot)\": x\n", port80),
		Want: `Service "web" is invalid: metadata.annotations: Invalid value: "$(reboot)": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
	{Name: "meta/selector-bad-value", Manifest: svc("web", "selector:\n  app: \"a b\"\nports:\n- port: 80\n"),
		Want: `Service "web" is invalid: spec.selector: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
	{Name: "meta/selector-bad-key", Manifest: svc("web", "selector:\n  \"a/b/c\": x\nports:\n- port: 80\n"),
		Want: `Service "web" is invalid: spec.selector: Invalid value: "a/b/c": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`},

	// Updates: type changes, a batch with one bad object.
	{Name: "update/clusterip-to-nodeport", Setup: []string{svc("web", port80)}, Manifest: svc("web", "type: NodePort\n"+port80)},
	{Name: "update/nodeport-to-clusterip", Setup: []string{svc("web", "type: NodePort\n"+port80+"  nodePort: 30085\n")}, Manifest: svc("web", port80)},
	{Name: "update/clusterip-to-externalname", Setup: []string{svc("web", port80)},
		Manifest: svc("web", "type: ExternalName\nexternalName: db.example.com\n"+port80)},
	{Name: "update/externalname-to-clusterip", Setup: []string{svc("web", "type: ExternalName\nexternalName: db.example.com\n")}, Manifest: svc("web", port80)},
	{Name: "update/lb-local-to-cluster", Setup: []string{svc("web", "type: LoadBalancer\nexternalTrafficPolicy: Local\n"+port80)},
		Manifest: svc("web", "type: LoadBalancer\nexternalTrafficPolicy: Cluster\n"+port80)},
	{Name: "update/externalips-removed", Setup: []string{svc("web", "externalIPs:\n- 198.51.100.12\n"+port80)}, Manifest: svc("web", "externalIPs: []\n"+port80)},
	{Name: "update/externalips-removed-local", Setup: []string{svc("web", "externalIPs:\n- 198.51.100.13\nexternalTrafficPolicy: Local\n"+port80)},
		Manifest: svc("web", "externalIPs: []\nexternalTrafficPolicy: Local\n"+port80)},
	{Name: "update/affinity-off", Setup: []string{svc("web", "sessionAffinity: ClientIP\n"+port80)}, Manifest: svc("web", "sessionAffinity: None\n"+port80)},
	{Name: "batch/one-bad", Manifest: svc("good", port80) + "---\n" + svc("bad", "ports:\n- port: 0\n  targetPort: 80\n"),
		Want: `Service "bad" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`},
	{Name: "loadbalancer/source-ranges-on-clusterip", Manifest: svc("web", "loadBalancerSourceRanges:\n- 203.0.113.0/24\n"+port80), Want: "Service \"web\" is invalid: spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"},
	{Name: "externalips/with-local-policy", Manifest: svc("web", "externalIPs:\n- 198.51.100.11\nexternalTrafficPolicy: Local\n"+port80)},
	{Name: "ipfamily/dual-families", Manifest: svc("web", "ipFamilyPolicy: PreferDualStack\nipFamilies: [IPv4, IPv6]\n"+port80), Want: `Service "web" is invalid: spec.ipFamilies[1]: Invalid value: "IPv6": not configured on this cluster`},
	{Name: "clusterip/none-on-update", Setup: []string{svc("web", port80)}, Manifest: svc("web", "clusterIP: None\n"+port80), Want: `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set`},

	// Endpoints.
	{Name: "endpoints/valid", Setup: []string{svc("ext", "ports:\n- port: 3307\n")},
		Manifest: endpoints("ext", "- addresses:\n  - ip: 172.188.2.89\n  ports:\n  - port: 3307\n")},
	{Name: "endpoints/loopback", Manifest: endpoints("ext", "- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - port: 3307\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
	{Name: "endpoints/link-local", Manifest: endpoints("ext", "- addresses:\n  - ip: 169.254.169.254\n  ports:\n  - port: 3307\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].addresses[0].ip: Invalid value: "169.254.169.254": may not be in the link-local range (169.254.0.0/16, fe80::/10)`},
	{Name: "endpoints/unspecified", Manifest: endpoints("ext", "- addresses:\n  - ip: 0.0.0.0\n  ports:\n  - port: 3307\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].addresses[0].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)`},
	{Name: "endpoints/multicast", Manifest: endpoints("ext", "- addresses:\n  - ip: 224.0.0.1\n  ports:\n  - port: 3307\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].addresses[0].ip: Invalid value: "224.0.0.1": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)`},
	{Name: "endpoints/not-an-ip", Manifest: endpoints("ext", "- addresses:\n  - ip: db.example.com\n  ports:\n  - port: 3307\n"),
		Want: `Endpoints "ext" is invalid: [subsets[0].addresses[0].ip: Invalid value: "db.example.com": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff), subsets[0].addresses[0].ip: Invalid value: "db.example.com": must be a valid IP address]`},
	{Name: "endpoints/clusterip", Setup: []string{svc("other", "clusterIP: 10.96.0.60\n"+port80)},
		Manifest: endpoints("ext", "- addresses:\n  - ip: 10.96.0.60\n  ports:\n  - port: 80\n")},
	{Name: "endpoints/ipv6", Manifest: endpoints("ext", "- addresses:\n  - ip: fd00::10\n  ports:\n  - port: 80\n"),
		Model: `Endpoints "ext" is invalid: subsets[0].addresses[0].ip: Invalid value: "fd00::10": svcsim simulates IPv4 only`,
		Why:   "svcsim's nodes, pods and datapaths are IPv4 only: an IPv6 endpoint would reach no datapath"},
	{Name: "endpoints/protocol-sctp", Manifest: endpoints("ext", "- addresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 80\n    protocol: SCTP\n"),
		Model: `Endpoints "ext" is invalid: subsets[0].ports[0].protocol: Unsupported value: "SCTP": supported values: "TCP", "UDP"`,
		Why:   "svcsim's datapaths carry TCP and UDP only"},
	{Name: "endpoints/not-ready", Manifest: endpoints("ext", "- notReadyAddresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 80\n")},
	{Name: "endpoints/no-addresses", Manifest: endpoints("ext", "- ports:\n  - port: 80\n"),
		Want: "Endpoints \"ext\" is invalid: subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"},
	{Name: "endpoints/port-0", Manifest: endpoints("ext", "- addresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 0\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`},
	{Name: "endpoints/ports-unnamed", Manifest: endpoints("ext", "- addresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 80\n  - port: 81\n"),
		Want: `Endpoints "ext" is invalid: [subsets[0].ports[0].name: Required value, subsets[0].ports[1].name: Required value]`},
	{Name: "endpoints/protocol", Manifest: endpoints("ext", "- addresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 80\n    protocol: ICMP\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`},
	{Name: "endpoints/bad-hostname", Manifest: endpoints("ext", "- addresses:\n  - ip: 192.0.2.20\n    hostname: Db_1\n  ports:\n  - port: 80\n"),
		Want: `Endpoints "ext" is invalid: subsets[0].addresses[0].hostname: Invalid value: "Db_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	{Name: "endpoints/bad-name", Manifest: endpoints("Ext", "- addresses:\n  - ip: 192.0.2.20\n  ports:\n  - port: 80\n"),
		Want: `Endpoints "Ext" is invalid: metadata.name: Invalid value: "Ext": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},

	// EndpointSlices.
	{Name: "slice/valid", Manifest: slice("ext", "addressType: IPv4\nendpoints:\n- addresses: [192.0.2.30]\n  conditions:\n    ready: true\nports:\n- name: http\n  port: 80\n  protocol: TCP\n")},
	{Name: "slice/fqdn", Manifest: slice("ext", "addressType: FQDN\nendpoints:\n- addresses: [db.example.com]\nports:\n- port: 80\n")},
	{Name: "slice/no-address-type", Manifest: slice("ext", "endpoints:\n- addresses: [192.0.2.30]\n"),
		Want: `EndpointSlice.discovery.k8s.io "ext" is invalid: addressType: Required value`},
	{Name: "slice/bad-address-type", Manifest: slice("ext", "addressType: IPv7\nendpoints:\n- addresses: [192.0.2.30]\n"),
		Want: `EndpointSlice.discovery.k8s.io "ext" is invalid: addressType: Unsupported value: "IPv7": supported values: "FQDN", "IPv4", "IPv6"`},
	{Name: "slice/bad-address", Manifest: slice("ext", "addressType: IPv4\nendpoints:\n- addresses: [192.0.2.300]\n"),
		Want: `EndpointSlice.discovery.k8s.io "ext" is invalid: endpoints[0].addresses[0]: Invalid value: "192.0.2.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
	{Name: "slice/loopback", Manifest: slice("ext", "addressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\n"),
		Want: `EndpointSlice.discovery.k8s.io "ext" is invalid: endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
	{Name: "slice/port-name", Manifest: slice("ext", "addressType: IPv4\nendpoints:\n- addresses: [192.0.2.30]\nports:\n- name: HTTP\n  port: 80\n"),
		Want: `EndpointSlice.discovery.k8s.io "ext" is invalid: ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},

	// Namespaces, DaemonSets.
	{Name: "namespace/bad-name", Manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Bad_NS\n", Want: `Namespace "Bad_NS" is invalid: metadata.name: Invalid value: "Bad_NS": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	{Name: "daemonset/basic", Manifest: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n" + indent(indent(indent(container)))},

	// Pods and Deployments.
	{Name: "pod/basic", Manifest: pod("web", container)},
	{Name: "pod/service-account", Manifest: pod("web", "serviceAccountName: default\n"+container)},
	{Name: "pod/no-containers", Manifest: pod("web", "restartPolicy: Always\n"),
		Want: `Pod "web" is invalid: spec.containers: Required value`},
	{Name: "pod/bad-container-name", Manifest: pod("web", "containers:\n- name: Web\n  image: nginx\n"),
		Want: `Pod "web" is invalid: spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	{Name: "deployment/basic", Manifest: deployment("web", "replicas: 2\nselector:\n  matchLabels:\n    app: web\ntemplate:\n  metadata:\n    labels:\n      app: web\n  spec:\n"+indent(indent(container)))},
	{Name: "deployment/negative-replicas", Manifest: deployment("web", "replicas: -1\nselector:\n  matchLabels:\n    app: web\ntemplate:\n  metadata:\n    labels:\n      app: web\n  spec:\n"+indent(indent(container))),
		Want: `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`},
	{Name: "deployment/selector-mismatch", Manifest: deployment("web", "selector:\n  matchLabels:\n    app: web\ntemplate:\n  metadata:\n    labels:\n      app: other\n  spec:\n"+indent(indent(container))),
		Want: "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"},

	// Ingresses: hosts, paths and TLS hosts as hostile input reaches them
	// (the ingress add-on renders what is accepted into nginx.conf).
	{Name: "ingress/basic", Manifest: ingress("www.tabops.com", "/", "Prefix", "")},
	{Name: "ingress/wildcard-host", Manifest: ingress(`"*.tabops.com"`, "/", "Prefix", "")},
	{Name: "ingress/host-253", Manifest: ingress(host253, "/", "Prefix", "")},
	{Name: "ingress/host-254", Manifest: ingress("a"+host253, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd": must be no more than 253 characters`},
	{Name: "ingress/host-uppercase", Manifest: ingress("WWW.tabops.com", "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "WWW.tabops.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/host-ip", Manifest: ingress(`"192.0.2.1"`, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "192.0.2.1": must be a DNS name, not an IP address`},
	{Name: "ingress/host-port", Manifest: ingress(`"www.tabops.com:80"`, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "www.tabops.com:80": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/host-wildcard-inside", Manifest: ingress(`"www.*.com"`, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "www.*.com": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/host-directive", Manifest: ingress(`"a.com; load_module /tmp/x.so"`, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "a.com; load_module /tmp/x.so": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/host-newline", Manifest: ingress(`"a.com\n}"`, "/", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].host: Invalid value: "a.com\n}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/path-relative", Manifest: ingress("www.tabops.com", "api", "Prefix", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path`},
	{Name: "ingress/path-dotdot", Manifest: ingress("www.tabops.com", "/a/../b", "Exact", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].path: Invalid value: "/a/../b": must not contain '/../'`},
	{Name: "ingress/path-no-type", Manifest: ingress("www.tabops.com", "/", "", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified`},
	{Name: "ingress/path-bad-type", Manifest: ingress("www.tabops.com", "/", "Regex", ""),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"`},
	{Name: "ingress/path-directive", Manifest: ingress("www.tabops.com", `"/a;}location /b {"`, "Prefix", "")},
	{Name: "ingress/path-newline", Manifest: ingress("www.tabops.com", `"/a\nb"`, "ImplementationSpecific", "")},
	{Name: "ingress/path-regex", Manifest: ingress("www.tabops.com", `"/api(/|$)(.*)"`, "ImplementationSpecific", "")},
	{Name: "ingress/path-4096", Manifest: ingress("www.tabops.com", "/"+strings.Repeat("p", 4095), "Prefix", "")},
	{Name: "ingress/tls-host-invalid", Manifest: ingress("www.tabops.com", "/", "Prefix", "- hosts:\n  - \"Bad_Host\"\n  secretName: tls\n"),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.tls[0].hosts[0]: Invalid value: "Bad_Host": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	{Name: "ingress/tls-secret-name-invalid", Manifest: ingress("www.tabops.com", "/", "Prefix", "- hosts:\n  - www.tabops.com\n  secretName: \"Bad/Name\"\n"),
		Want: `Ingress.networking.k8s.io "web" is invalid: spec.tls[0].secretName: Invalid value: "Bad/Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},

	// Secrets: hostile bytes are carried, a TLS Secret needs both keys.
	{Name: "secret/hostile-bytes", Manifest: secret("hostile", "Opaque", "v: "+hostileB64+"\n")},
	{Name: "secret/tls-not-pem", Manifest: secret("tls", "kubernetes.io/tls", "tls.crt: bm90IGEgY2VydA==\ntls.key: bm90IGEga2V5\n")},
	{Name: "secret/tls-no-key", Manifest: secret("tls", "kubernetes.io/tls", "tls.crt: bm90IGEgY2VydA==\n"),
		Want: `Secret "tls" is invalid: data[tls.key]: Required value`},
	{Name: "secret/bad-key", Manifest: secret("keys", "Opaque", "\"a b\": eA==\n"),
		Want: `Secret "keys" is invalid: data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`},
}

// host253 is a valid host of the most characters a DNS subdomain may have.
var host253 = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)

// hostileB64 is, base64-encoded, bytes that would break a shell or a
// config file: quotes, a newline, `;`, `$(...)`, a NUL and non-UTF-8.
const hostileB64 = "J1wiOyAkKHJtIC1yZiAvKQp9IGxvYWRfbW9kdWxlIHguc287AP/+"
