package main

import (
	"bytes"
	"testing"

	"github.com/svcsim/svcsim/topology"
)

func TestPrintRemoved(t *testing.T) {
	runs := []topology.RunRemoval{
		{ID: "svs000001", Removed: []string{"owner process 10", "process 11", "process 12",
			"namespace svs000001-node1", "namespace svs000001-node2", "namespace svs000001-pod-a", "run dir /run/svcsim/svs000001"}},
		{ID: "svs000002", Removed: []string{"namespace svs000002-external"}},
	}
	var b bytes.Buffer
	printRemoved(&b, runs, []string{"/run/svcsim/daemon-svs000001.log"}, false)
	want := "removed run svs000001: 1 owner process, 2 processes, 3 namespaces, 1 run dir\n" +
		"removed run svs000002: 1 namespace\n" +
		"removed 1 stale daemon log\n"
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printRemoved(&b, runs, nil, true)
	if got := b.String(); got != "removed owner process 10\nremoved process 11\nremoved process 12\n"+
		"removed namespace svs000001-node1\nremoved namespace svs000001-node2\nremoved namespace svs000001-pod-a\n"+
		"removed run dir /run/svcsim/svs000001\nremoved namespace svs000002-external\n" {
		t.Errorf("verbose:\n%s", got)
	}
	b.Reset()
	printRemoved(&b, nil, nil, false)
	if b.Len() != 0 {
		t.Errorf("nothing removed printed %q", b.String())
	}
}
