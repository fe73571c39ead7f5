// Command etcd is upstream etcd's server main, built from the Go module proxy at the version that
// cluster/versions.env pins (Debian's etcd 3.4 lacks RequestWatchProgress, so watches stall).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
