// Command kube-proxy-1.25 is the genuine kube-proxy of Kubernetes v1.25.16,
// unmodified (k8s.io/kubernetes/cmd/kube-proxy/app), for its userspace
// proxier, which later releases removed. Like bin/k8s it dispatches on the
// name it is started as or on its first argument, so the kubernetes plane
// starts it the same way:
//
//	kube-proxy-1.25 kube-proxy --proxy-mode=userspace ...
//	kube-proxy-1.25 versions     ({"kubernetes": "v1.25.16"})
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	"k8s.io/component-base/version"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name != "kube-proxy" && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	switch name {
	case "kube-proxy":
		os.Args[0] = name
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "versions":
		if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"kubernetes": version.Get().GitVersion}); err != nil {
			fmt.Fprintln(os.Stderr, "kube-proxy-1.25 versions:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: kube-proxy-1.25 kube-proxy [FLAGS...] | kube-proxy-1.25 versions")
		os.Exit(2)
	}
}
