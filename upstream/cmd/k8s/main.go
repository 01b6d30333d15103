// Command k8s is one multi-call binary of genuine upstream components, built
// unmodified from their released modules: kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy, kubectl, etcd and
// CoreDNS. One binary shares one link of the large common dependency graph
// (client-go, apimachinery, ...), which is what makes building them from the
// Go module proxy affordable.
//
// The component is chosen by the name the binary is started as (a symlink
// named kube-apiserver, etcd, ...) or else by the first argument:
//
//	k8s kube-apiserver --etcd-servers=...
//	k8s kubectl get pods
//	k8s versions        (every component's version, as JSON)
//
// Each component then sees os.Args as if it were its own binary, so its flag
// parsing, help and exit codes are upstream's.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// component runs one upstream main and does not return.
type component func()

// components maps a binary name to its main. The entries live in files named
// after the component so each one's imports stay beside it.
var components = map[string]component{}

func register(name string, main component) { components[name] = main }

// versions records what each component reports about itself; `k8s versions`
// prints it so a results file can name the genuine code it ran.
var versions = map[string]func() string{}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	switch name {
	case "versions":
		printVersions()
		return
	case "-h", "--help", "help":
		usage()
		return
	}
	run, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "k8s: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	os.Args[0] = name
	if name != "coredns" {
		withoutGoFlags(corednsGoFlags)
	}
	run()
}

func names() []string {
	var out []string
	for n := range components {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: k8s COMPONENT [ARGS...] (or run through a symlink named COMPONENT)\ncomponents: %s\n       k8s versions\n",
		strings.Join(names(), " "))
}

func printVersions() {
	out := map[string]string{}
	for n, v := range versions {
		out[n] = v()
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "k8s versions:", err)
		os.Exit(1)
	}
}
