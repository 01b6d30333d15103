package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones, as the upstream mains import it

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	"k8s.io/component-base/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's auth plugins
)

// The Kubernetes mains, each as k8s.io/kubernetes/cmd/<name>/<name>.go has it.
func init() {
	register("kube-apiserver", func() { os.Exit(cli.Run(apiserver.NewAPIServerCommand())) })
	register("kube-controller-manager", func() { os.Exit(cli.Run(controllermanager.NewControllerManagerCommand())) })
	register("kube-scheduler", func() { os.Exit(cli.Run(scheduler.NewSchedulerCommand())) })
	register("kube-proxy", func() { os.Exit(cli.Run(proxy.NewProxyCommand())) })
	register("kubectl", func() {
		logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) // nolint:errcheck // as upstream
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		os.Exit(0)
	})
	versions["kubernetes"] = func() string { return version.Get().GitVersion }
}
