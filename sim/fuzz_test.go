package sim

import (
	"fmt"
	"testing"
	"time"
)

// FuzzDecodeApply feeds arbitrary bytes to the manifest decoder and applies
// what decodes to a fresh two-node model. Neither may panic or run away, and
// a rejected batch must leave the model untouched (Apply is all or nothing).
// Seeds: testdata/fuzz/FuzzDecodeApply (the seed's manifests and the
// regressions fuzzing found).
func FuzzDecodeApply(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A runaway input stops the worker, so the fuzzer keeps it as a
		// crasher (go test -fuzz notices no hang on its own).
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("input ran over 10s: %q", data)) })
		defer watchdog.Stop()
		objs, err := Decode(data, "fuzz")
		if err != nil {
			return
		}
		c, err := New(DefaultConfig(2))
		if err != nil {
			t.Fatal(err)
		}
		gen := c.Generation()
		pods := len(c.Pods())
		if _, err := c.Apply(objs); err != nil {
			if g := c.Generation(); g != gen {
				t.Fatalf("rejected batch moved the generation %d -> %d: %v", gen, g, err)
			}
			if n := len(c.Pods()); n != pods {
				t.Fatalf("rejected batch changed the pods %d -> %d: %v", pods, n, err)
			}
			return
		}
		for _, n := range c.Nodes() {
			if err := c.NodeState(n.Name).Validate(); err != nil {
				t.Fatalf("accepted batch gives node %s an invalid state: %v", n.Name, err)
			}
		}
	})
}

// TestApplyRefusesRunawayReplicas: a Deployment asking for two billion
// replicas would have the controllers build every pod in one transaction
// (12,000 took 19 s and kept growing quadratically); the model refuses it
// at once, names its limit, and changes nothing.
func TestApplyRefusesRunawayReplicas(t *testing.T) {
	c, _ := newCluster(t, 2)
	gen := c.Generation()
	start := time.Now()
	_, err := c.Apply([]Object{{Source: "t:0", Obj: makeDeployment("default", "big", 2000000000)}})
	if err == nil {
		t.Fatal("two billion replicas accepted")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	want := fmt.Sprintf("the workloads would need 2000000000 pods (Deployments' replicas, DaemonSets on every node, pods of their own); svcsim's model runs at most %d", MaxPods)
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if g := c.Generation(); g != gen || len(c.Pods()) != 0 {
		t.Fatalf("refused batch changed the model: generation %d, %d pods", g, len(c.Pods()))
	}
	// At the limit it still works.
	_, err = c.Apply([]Object{{Source: "t:0", Obj: makeDeployment("default", "ok", 100)}})
	if err != nil {
		t.Fatal(err)
	}
}
