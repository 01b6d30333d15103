package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/stats"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/embedded"
)

// MetricPlaneProgrammed is one change through a control plane, end to end:
// a Deployment scaled by one with N Services present, from the call until
// plane.WaitProgrammed returns (every node's proxy programmed it); Extra:
// the time until the change was accepted.
const MetricPlaneProgrammed = "plane-programmed"

// planeNamespace holds the objects of the plane measurement:
//
//	bench-plane/svc-NNNNN  N-1 Services without a selector, each with
//	                       Endpoints 172.31.<i/250>.<i%250+1>:80 (E copies
//	                       of ports 80..), addresses outside the cluster
//	                       that exist only as rules
//	bench-plane/web        a Deployment of getip pods behind Service web
const planeNamespace = "bench-plane"

// planeManifest is the Namespace, n-1 selectorless Services with e
// endpoints each, and the web Deployment and Service.
func planeManifest(n, e int) plane.Manifest {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", planeNamespace)
	for i := range n - 1 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%05d\nspec:\n  ports:\n    - port: 80\n", i)
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: svc-%05d\nsubsets:\n  - addresses:\n", i)
		for k := range e {
			j := i*e + k
			fmt.Fprintf(&b, "      - ip: 172.31.%d.%d\n", j/250, j%250+1)
		}
		b.WriteString("    ports:\n      - port: 80\n")
	}
	b.WriteString(`---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
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
`)
	return plane.Text(fmt.Sprintf("bench-plane-%d-services", n), b.String())
}

// PlaneChanges measures MetricPlaneProgrammed on p: it applies n Services
// (e endpoints each) in namespace bench-plane, waits for the barrier, then
// scales the web Deployment up and down changes times each, and returns
// the samples (ms): until each change was accepted, and until it was
// programmed. It deletes the namespace afterwards. It works on any plane.
func PlaneChanges(ctx context.Context, p plane.Plane, n, e, changes int) (accepted, programmed []float64, err error) {
	if n*e >= 250*256 {
		return nil, nil, fmt.Errorf("%d services x %d endpoints exceed the plane measurement's 172.31.0.0/16", n, e)
	}
	if _, err := p.Apply(ctx, planeNamespace, planeManifest(n, e)); err != nil {
		return nil, nil, fmt.Errorf("apply %d services: %w", n, err)
	}
	defer func() {
		if derr := p.Delete(ctx, plane.Ref{Kind: "namespace", Name: planeNamespace}); derr != nil && err == nil {
			err = derr
		} else if derr == nil {
			if werr := p.WaitProgrammed(ctx); werr != nil && err == nil {
				err = werr
			}
		}
	}()
	if err := p.WaitProgrammed(ctx); err != nil {
		return nil, nil, fmt.Errorf("program %d services: %w", n, err)
	}
	web := plane.Ref{Kind: "deployment", Namespace: planeNamespace, Name: "web"}
	for range changes {
		for _, replicas := range []int32{2, 1} {
			start := time.Now()
			if err := p.Scale(ctx, web, replicas); err != nil {
				return accepted, programmed, fmt.Errorf("scale to %d: %w", replicas, err)
			}
			accepted = append(accepted, ms(time.Since(start)))
			if err := p.WaitProgrammed(ctx); err != nil {
				return accepted, programmed, fmt.Errorf("scale to %d: %w", replicas, err)
			}
			programmed = append(programmed, ms(time.Since(start)))
		}
	}
	return accepted, programmed, nil
}

// plane measures MetricPlaneProgrammed on a fresh two-node embedded
// cluster running dp, at every n.
func (r *runner) plane(ctx context.Context, dp string, s series) error {
	cfg := embedded.DefaultConfig(dp, 2)
	cp, err := embedded.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start a two-node cluster: %w", err)
	}
	defer func() {
		if err := cp.Close(); err != nil {
			r.fail(dp, "close the plane's cluster", err)
		}
	}()
	for _, n := range r.cfg.Services {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		acc, prog, err := PlaneChanges(ctx, cp, n, r.cfg.Endpoints, r.cfg.Changes)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		p := point(n, prog, true, map[string]float64{"accepted_median_ms": stats.Summarize(acc).Median})
		s.add(MetricPlaneProgrammed, p)
		r.logf("bench: %-16s N=%-6d plane change programmed p50 %.2f ms (accepted %.3f ms)", dp, n, p.Median, p.Extra["accepted_median_ms"])
	}
	return nil
}
