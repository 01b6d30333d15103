package main

import (
	"os"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// etcd's own main (go.etcd.io/etcd/server/v3/main.go), which starts the
// server through go.etcd.io/etcd/server/v3/embed.
func init() {
	register("etcd", func() { etcdmain.Main(os.Args); os.Exit(0) })
	versions["etcd"] = func() string { return etcdversion.Version }
}
