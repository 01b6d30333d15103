package printer

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/svcsim/svcsim/sim"
	"sigs.k8s.io/yaml"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []Selection
	}{
		{[]string{"svc"}, []Selection{{Kind: "Service"}}},
		{[]string{"svc", "a", "b"}, []Selection{{Kind: "Service", Names: []string{"a", "b"}}}},
		{[]string{"svc", "a", "a"}, []Selection{{Kind: "Service", Names: []string{"a"}}}},
		{[]string{"svc/a", "pod/b", "services/c"}, []Selection{{Kind: "Service", Names: []string{"a", "c"}}, {Kind: "Pod", Names: []string{"b"}}}},
		{[]string{"svc,ep"}, []Selection{{Kind: "Service"}, {Kind: "Endpoints"}}},
		{[]string{"svc,ep", "x"}, []Selection{{Kind: "Service", Names: []string{"x"}}, {Kind: "Endpoints", Names: []string{"x"}}}},
	} {
		got, err := ParseArgs(tc.args)
		require.NoError(t, err, "%v", tc.args)
		require.Equal(t, tc.want, got, "%v", tc.args)
	}
	for args, msg := range map[string]string{
		"":            "you must specify the type of resource",
		"svc svc/a":   "no need to specify a resource type as a separate argument",
		"svc/a b":     "no need to specify a resource type as a separate argument",
		"svc/":        "must have a single resource and name",
		"svc/a/b":     "must have a single resource and name",
		"widgets":     `doesn't have a resource type "widgets"`,
		"pod/a wid/b": `doesn't have a resource type "wid"`,
	} {
		_, err := ParseArgs(strings.Fields(args))
		require.ErrorContains(t, err, msg, "%q", args)
	}
}

// TestGetForms: one test per argument form of kubectl get.
func TestGetForms(t *testing.T) {
	c := seedCluster(t)
	objs, err := sim.Decode([]byte(`apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
`), "demo.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	names := func(out string) []string {
		var n []string
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n")[1:] {
			n = append(n, strings.Fields(l)[0])
		}
		return n
	}

	t.Run("several names", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc", "my-service", "getip-service"}})
		require.Equal(t, []string{"my-service", "getip-service"}, names(out), out)
		require.True(t, strings.HasPrefix(out, "NAME "), "one table, one header:\n%s", out)
		require.Equal(t, 1, strings.Count(out, "NAME "))
	})

	t.Run("missing name among several", func(t *testing.T) {
		var b bytes.Buffer
		err := Print(&b, c, Request{Args: []string{"svc", "ext-name", "my-service", "lb"}, Now: t0})
		require.EqualError(t, err, "services \"ext-name\" not found\nservices \"lb\" not found")
		require.Equal(t, []string{"my-service"}, names(b.String()), "the found one is printed")
	})

	t.Run("kind/name", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc/my-service"}})
		require.Equal(t, []string{"my-service"}, names(out))
		// Several kinds: one table each, names prefixed by their kind.
		out = get(t, c, Request{Args: []string{"svc/my-service", "node/node1", "svc/getip-service"}})
		tables := strings.Split(out, "\n\n")
		require.Len(t, tables, 2, out)
		require.Equal(t, []string{"service/my-service", "service/getip-service"}, names(tables[0]+"\n"))
		require.Equal(t, []string{"node/node1"}, names(tables[1]))
	})

	t.Run("types with commas", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc,ep", "external-service"}})
		require.Contains(t, out, "service/external-service ")
		require.Contains(t, out, "endpoints/external-service ")
	})

	t.Run("-A", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc"}, AllNamespaces: true})
		require.Regexp(t, `^NAMESPACE +NAME +TYPE`, out)
		require.Regexp(t, `(?m)^demo +web +ClusterIP `, out)
		require.Regexp(t, `(?m)^default +getip-service +ClusterIP `, out)
	})

	t.Run("-n", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc"}, Namespace: "demo"})
		require.Equal(t, []string{"web"}, names(out))
		out = get(t, c, Request{Args: []string{"svc", "web"}, Namespace: "demo"})
		require.Equal(t, []string{"web"}, names(out))
		var b bytes.Buffer
		require.EqualError(t, Print(&b, c, Request{Args: []string{"svc", "web"}}), `services "web" not found`, "the default namespace has none")
	})

	t.Run("-l", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"pods"}, Selector: "app=getip"})
		require.Len(t, names(out), 2)
		for _, n := range names(out) {
			require.True(t, strings.HasPrefix(n, "getip-deployment-"), n)
		}
		out = get(t, c, Request{Args: []string{"pods"}, Selector: "app=nothing"})
		require.Equal(t, "No resources found in default namespace.\n", out)
	})

	t.Run("-o name", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc", "my-service", "getip-service"}, Output: "name"})
		require.Equal(t, "service/my-service\nservice/getip-service\n", out)
		out = get(t, c, Request{Args: []string{"deploy/getip-deployment", "no/node2"}, Output: "name"})
		require.Equal(t, "deployment.apps/getip-deployment\nnode/node2\n", out)
	})

	t.Run("-o wide", func(t *testing.T) {
		out := get(t, c, Request{Args: []string{"svc", "myhttp-v2-service"}, Output: "wide"})
		require.Regexp(t, `(?m)^myhttp-v2-service +NodePort +\S+ +<none> +8800:30080/TCP +18h +app=myhttp-v2$`, out)
	})

	t.Run("-o yaml", func(t *testing.T) {
		var m map[string]any
		out := get(t, c, Request{Args: []string{"svc/my-service"}, Output: "yaml"})
		require.NoError(t, yaml.Unmarshal([]byte(out), &m))
		require.Equal(t, "Service", m["kind"], "one named object is printed bare")
		out = get(t, c, Request{Args: []string{"svc", "my-service", "getip-service"}, Output: "yaml"})
		require.NoError(t, yaml.Unmarshal([]byte(out), &m))
		require.Equal(t, "List", m["kind"])
		require.Len(t, m["items"], 2)
	})

	t.Run("-o json", func(t *testing.T) {
		var m map[string]any
		out := get(t, c, Request{Args: []string{"svc/my-service", "ep/my-service"}, Output: "json"})
		require.NoError(t, yaml.Unmarshal([]byte(out), &m))
		require.Equal(t, "List", m["kind"])
		items := m["items"].([]any)
		require.Len(t, items, 2)
		require.Equal(t, "Endpoints", items[1].(map[string]any)["kind"])
	})
}

func describeOut(t *testing.T, r Request) string {
	t.Helper()
	r.Describe = true
	if r.Now.IsZero() {
		r.Now = t0.Add(18 * time.Hour)
	}
	var b bytes.Buffer
	require.NoError(t, Print(&b, seedCluster(t), r))
	return b.String()
}

// fields checks that out has each "Field:   value" line (values as
// regular expressions), aligned the way kubectl aligns them.
func fields(t *testing.T, out string, want ...string) {
	t.Helper()
	for i := 0; i < len(want); i += 2 {
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(want[i])+` +`+want[i+1]+`$`, out)
	}
}

func TestDescribeService(t *testing.T) {
	out := describeOut(t, Request{Args: []string{"svc", "myhttp-v2-service"}})
	require.True(t, strings.HasPrefix(out, "Name:                     myhttp-v2-service\n"), out)
	fields(t, out,
		"Namespace:", "default",
		"Labels:", "<none>",
		"Annotations:", "<none>",
		"Selector:", "app=myhttp-v2",
		"Type:", "NodePort",
		"IP Family Policy:", "SingleStack",
		"IP Families:", "IPv4",
		"IP:", `10\.\d+\.\d+\.\d+`,
		"IPs:", `10\.\d+\.\d+\.\d+`,
		"Port:", `<unset>  8800/TCP`,
		"TargetPort:", `80/TCP`,
		"NodePort:", `<unset>  30080/TCP`,
		"Endpoints:", `10\.244\.[12]\.\d+:80,10\.244\.[12]\.\d+:80`,
		"Session Affinity:", "None",
		"External Traffic Policy:", "Cluster",
		"Internal Traffic Policy:", "Cluster",
		"Events:", "<none>")
	require.NotContains(t, out, "last-applied-configuration")

	out = describeOut(t, Request{Args: []string{"svc/my-service"}})
	fields(t, out, "Port:", `http  80/TCP`, "TargetPort:", `9376/TCP`, "Port:", `https  443/TCP`, "TargetPort:", `9377/TCP`)
	require.Equal(t, 2, strings.Count(out, "Endpoints:"), "one per port")
}

func TestDescribePod(t *testing.T) {
	out := describeOut(t, Request{Args: []string{"pods"}, Selector: "app=getip"})
	require.Equal(t, 2, strings.Count(out, "\nContainers:\n"), "every pod of the selector")
	require.Contains(t, out, "Events:             <none>\n\n\nName:")
	fields(t, out,
		"Name:", `getip-deployment-\S+`,
		"Namespace:", "default",
		"Node:", `node[12]/198\.18\.0\.1[12]`,
		"Labels:", "app=getip",
		"Status:", "Running",
		"IP:", `10\.244\.[12]\.2`,
		"Controlled By:", `ReplicaSet/getip-deployment-\S+`,
		"    Image:", "getip:v1",
		"    State:", "Running",
		"    Ready:", "True",
		"    Restart Count:", "0",
		"  Ready", "True",
		"QoS Class:", "BestEffort")
	require.Regexp(t, `(?m)^IPs:\n  IP: +10\.244\.`, out)
	require.Regexp(t, `(?m)^Containers:\n  getip:\n    Image: +getip:v1$`, out)
	require.Regexp(t, `(?m)^Conditions:\n  Type +Status$`, out)
}

func TestDescribeNode(t *testing.T) {
	out := describeOut(t, Request{Args: []string{"node/node1"}})
	fields(t, out,
		"Name:", "node1",
		"Roles:", "<none>",
		"Labels:", `\S+=\S+`,
		"Taints:", "<none>",
		"Unschedulable:", "false",
		"  Ready", `True .*`,
		"  InternalIP:", `198\.18\.0\.11`,
		"  Kernel Version:", "host",
		"PodCIDR:", `10\.244\.1\.0/24`,
		"Non-terminated Pods:", `\(\d+ in total\)`,
		"Events:", "<none>")
	require.Regexp(t, `(?m)^Conditions:\n  Type +Status +LastHeartbeatTime +LastTransitionTime +Reason +Message$`, out)
	require.Regexp(t, `(?m)^  default +getip-deployment-\S+ +18h$`, out)
	require.NotContains(t, out, "Namespace:  ", "nodes have no namespace")
}

func TestDescribeEndpoints(t *testing.T) {
	out := describeOut(t, Request{Args: []string{"ep", "external-service"}})
	fields(t, out,
		"Name:", "external-service",
		"Namespace:", "default",
		"  Addresses:", `172\.188\.2\.89`,
		"  NotReadyAddresses:", "<none>",
		"    <unset>", `3307 +TCP`,
		"Events:", "<none>")
	require.Regexp(t, `(?m)^  Ports:\n    Name +Port +Protocol\n    ---- +---- +--------$`, out)

	var b bytes.Buffer
	require.ErrorContains(t, Print(&b, seedCluster(t), Request{Args: []string{"deploy"}, Describe: true}),
		"svcsim describes Services, Pods, Nodes and Endpoints; for deployment.apps use svcsim get deployment.apps -o yaml")
}
