package main

import (
	"flag"

	"github.com/coredns/coredns/coremain"

	// Only the plugins of the kube-dns Corefile (kubeadm's, without forward:
	// nothing may leave svcsim's namespaces). The order in which they run is
	// CoreDNS's own (core/dnsserver/zdirectives.go), not import order.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// CoreDNS's main (github.com/coredns/coredns/coredns.go) with a smaller
// plugin set.
func init() {
	register("coredns", func() {
		onlyGoFlags(corednsGoFlags)
		coremain.Run()
	})
	versions["coredns"] = func() string { return coremain.CoreVersion }
}

// corednsGoFlags are the flags CoreDNS defines on the standard library's
// flag.CommandLine at init (coremain/run.go, for the dns server type). They
// would show in the flag list of every component that adds
// flag.CommandLine to its own flags (kube-proxy does), and CoreDNS's
// -version would shadow kube-proxy's --version. So each component sees only
// its own: CoreDNS these, the others everything but these. The plane/kube
// tests check both sides, so a CoreDNS release that changes the list is
// noticed.
var corednsGoFlags = map[string]bool{
	"conf": true, "plugins": true, "pidfile": true, "version": true, "quiet": true,
	"log-format": true, "dns.port": true, "p": true,
}

// onlyGoFlags replaces flag.CommandLine by a set holding only keep's flags,
// and withoutGoFlags by one holding all but drop's. The flags keep their
// values, so defaults set at init stay.
func onlyGoFlags(keep map[string]bool) { filterGoFlags(func(n string) bool { return keep[n] }) }

func withoutGoFlags(drop map[string]bool) { filterGoFlags(func(n string) bool { return !drop[n] }) }

func filterGoFlags(keep func(string) bool) {
	old := flag.CommandLine
	fs := flag.NewFlagSet(old.Name(), flag.ExitOnError)
	fs.Usage = old.Usage
	old.VisitAll(func(f *flag.Flag) {
		if keep(f.Name) {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	flag.CommandLine = fs
}
