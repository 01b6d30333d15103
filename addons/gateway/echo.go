package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

// EchoImages are the Gateway API conformance suite's echo backend image
// repositories (the pinned suite's and the staging one).
var EchoImages = []string{
	"registry.k8s.io/gateway-api/echo-basic",
	"gcr.io/k8s-staging-gateway-api/echo-basic",
}

// EchoPort is the echo server's default HTTP port (its HTTP_PORT).
const EchoPort = 3000

// EchoReply is what the echo backend answers: the request it saw and the
// pod that saw it, the JSON fields the conformance suite reads.
type EchoReply struct {
	Path      string              `json:"path"`
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	HTTPPort  string              `json:"httpPort"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
}

// Echo is the echo backend as a built-in workload: an HTTP server on the
// container's HTTP_PORT (3000 when unset) in the pod's namespace that
// answers every request with an EchoReply (pod and namespace as the
// manifests' downward-API POD_NAME and NAMESPACE give them), and copies
// X-Echo-Set-Header's "name:value" pairs into the response, as the
// suite's image does.
var Echo = addons.Workload{
	Name: "gateway-echo",
	Ports: func(_ sim.Pod, c sim.Container) []topology.Port {
		return []topology.Port{{Port: EchoPort, Protocol: "TCP"}}
	},
	Start: startEcho,
}

type echoServer struct{ srv *http.Server }

func (e *echoServer) Stop() error { return e.srv.Close() }

func startEcho(ctx context.Context, env addons.Env) (addons.Instance, error) {
	port := EchoPort
	vars := map[string]string{}
	if env.Client != nil {
		pod, err := env.Client.CoreV1().Pods(env.Pod.Namespace).Get(ctx, env.Pod.Name, metav1.GetOptions{})
		if err == nil && env.Container < len(pod.Spec.Containers) {
			for _, e := range pod.Spec.Containers[env.Container].Env {
				vars[e.Name] = e.Value
			}
		}
	}
	if p, err := strconv.Atoi(vars["HTTP_PORT"]); err == nil && p > 0 && p < 65536 {
		port = p
	}
	var ln net.Listener
	if err := env.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		return nil, fmt.Errorf("echo backend in %s: listen on :%d: %w", env.Pod.Key(), port, err)
	}
	base := EchoReply{HTTPPort: strconv.Itoa(port), Namespace: env.Pod.Namespace, Pod: env.Pod.Name,
		Ingress: vars["INGRESS_NAME"], Service: vars["SERVICE_NAME"]}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := base
		reply.Path, reply.Host, reply.Method, reply.Proto, reply.Headers = r.RequestURI, r.Host, r.Method, r.Proto, r.Header
		for _, v := range r.Header.Values("X-Echo-Set-Header") {
			setEchoHeaders(w.Header(), v)
		}
		b, err := json.MarshalIndent(reply, "", " ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(b)
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && env.Log != nil {
			fmt.Fprintf(env.Log, "echo backend %s: %v\n", env.Pod.Key(), err)
		}
	}()
	return &echoServer{srv: srv}, nil
}

// setEchoHeaders adds "name:value, name:value" pairs to h, keeping the
// names' case; a repeated name's values are joined with commas.
func setEchoHeaders(h http.Header, list string) {
	for _, kv := range strings.Split(list, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(kv), ":")
		value = strings.TrimSpace(value)
		if name == "" {
			continue
		}
		if len(h[name]) == 0 {
			h[name] = []string{value}
		} else {
			h[name][0] += "," + value
		}
	}
}
