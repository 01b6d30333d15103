package planetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/plane"
)

const app = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: getip
          ports:
            - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 80
`

// scaleUp is shaped like a scenario: it applies an app in its own
// namespace, scales it from 2 to 3 and checks, on every node, what a
// packet would meet (the programmed endpoints). barrier says whether it
// calls WaitProgrammed after each change, as scenarios must.
func scaleUp(ctx context.Context, f *Fake, barrier bool) error {
	const ns = "scale-up"
	if _, err := f.Apply(ctx, "", plane.Text("ns", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n")); err != nil {
		return err
	}
	if _, err := f.Apply(ctx, ns, plane.Text("app", app)); err != nil {
		return err
	}
	if barrier {
		if err := f.WaitProgrammed(ctx); err != nil {
			return err
		}
	}
	if err := f.Scale(ctx, plane.Ref{Kind: "deployment", Namespace: ns, Name: "web"}, 3); err != nil {
		return err
	}
	if barrier {
		if err := f.WaitProgrammed(ctx); err != nil {
			return err
		}
	}
	for _, n := range f.Nodes() {
		if got := Endpoints(f.Programmed(n.Name), ns, "web"); len(got) != 3 {
			return fmt.Errorf("node %s routes to %d endpoints %v, want 3", n.Name, len(got), got)
		}
	}
	return nil
}

func newFake(t *testing.T) *Fake {
	t.Helper()
	f, err := New(2, 100*time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.WaitProgrammed(ctx))
	return f
}

// TestForgottenBarrierFails: on a plane that programs asynchronously (as
// the genuine kube-proxy does, and the embedded plane too), a
// scenario that reads the datapath right after a change without the
// barrier fails; with the barrier it passes.
func TestForgottenBarrierFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := scaleUp(ctx, newFake(t), false)
	require.Error(t, err, "a scenario without the barrier must fail on an asynchronous plane")
	require.Contains(t, err.Error(), "want 3")
	require.NoError(t, scaleUp(ctx, newFake(t), true))
}

// TestWaitProgrammedSkipsStoppedProxy: a node whose proxy is down is not
// waited for and keeps its old state (a crash); it catches up once
// started again.
func TestWaitProgrammedSkipsStoppedProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newFake(t)
	require.NoError(t, scaleUp(ctx, f, true))
	require.NoError(t, f.KillProxy(ctx, "node2"))
	require.NoError(t, f.Scale(ctx, plane.Ref{Kind: "deployment", Namespace: "scale-up", Name: "web"}, 1))
	require.NoError(t, f.WaitProgrammed(ctx))
	require.Len(t, Endpoints(f.Programmed("node1"), "scale-up", "web"), 1)
	require.Len(t, Endpoints(f.Programmed("node2"), "scale-up", "web"), 3, "a killed proxy keeps what it programmed")
	require.NoError(t, f.StartProxy(ctx, "node2"))
	require.NoError(t, f.WaitProgrammed(ctx))
	require.Len(t, Endpoints(f.Programmed("node2"), "scale-up", "web"), 1)
}

// TestApplyRejectsAtOnce: acceptance is synchronous: an invalid manifest
// is refused by Apply itself, before any programming.
func TestApplyRejectsAtOnce(t *testing.T) {
	f := newFake(t)
	bad := "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  type: NodePort\n  ports:\n    - port: 80\n      nodePort: 40000\n"
	_, err := f.Apply(context.Background(), "", plane.Text("bad.yaml", bad))
	require.ErrorContains(t, err, "nodePort")
}
