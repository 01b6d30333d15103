package embedded

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// reconciler runs reconcile whenever woken, until ctx ends, and records
// the generation every proxy replied with (or the error).
func (cp *ControlPlane) reconciler(ctx context.Context) {
	defer close(cp.workerDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.kick:
		}
		gen := cp.cluster.Generation()
		cp.recMu.Lock()
		err := cp.reconcile(ctx)
		got := cp.programmedLocked(gen)
		cp.recMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		cp.progMu.Lock()
		if err != nil {
			cp.failed, cp.failedGen = err, gen
			fmt.Fprintf(cp.log, "run %s: programming generation %d: %v\n", cp.run.ID, gen, err)
		} else {
			cp.failed = nil
			cp.programmed = max(cp.programmed, got)
		}
		close(cp.progress)
		cp.progress = make(chan struct{})
		cp.progMu.Unlock()
	}
}

// programmedLocked is what a reconcile that started at generation gen
// has put in place: the lowest generation the running proxies replied
// with, but no more than gen. A change accepted during the reconcile may
// be in the states pushed (they are read after the pods are made) without
// its pods, so only gen, read before the pods, is known to be complete.
// Called with recMu held.
func (cp *ControlPlane) programmedLocked(gen uint64) uint64 {
	cp.progMu.Lock()
	defer cp.progMu.Unlock()
	low := gen
	for node := range cp.proxies {
		if !cp.lost[node] {
			low = min(low, cp.lastSync[node].Generation)
		}
	}
	return low
}

// WaitProgrammed implements plane.Plane: it returns once the reconciler
// has made the pods of the model's current generation and every running
// proxy has replied to a push of that generation or a later one.
func (cp *ControlPlane) WaitProgrammed(ctx context.Context) error {
	want := cp.cluster.Generation()
	cp.wake()
	for {
		cp.progMu.Lock()
		done, failed, failedGen, progress := cp.programmed, cp.failed, cp.failedGen, cp.progress
		cp.progMu.Unlock()
		switch {
		case done >= want:
			return nil
		case failed != nil && failedGen >= want:
			return fmt.Errorf("program generation %d: %w", want, failed)
		}
		select {
		case <-progress:
		case <-cp.workerDone:
			return errors.New("the control plane is closed")
		case <-ctx.Done():
			return fmt.Errorf("wait for generation %d to be programmed (programmed: %d): %w", want, done, ctx.Err())
		}
	}
}

// reconcile makes the topology's pods match the model's and pushes every
// node's desired state to its proxy. Order matters, as on a real cluster: new
// pods are running before any proxy sends them traffic, and departed pods
// are removed only after every proxy has stopped sending them any. Called
// by the reconciler with recMu held.
func (cp *ControlPlane) reconcile(ctx context.Context) error {
	// Workloads see the change before the proxies program it, as they
	// would on a real cluster, where watches fire as soon as it is stored.
	if err := cp.view.Sync(cp.cluster); err != nil {
		return fmt.Errorf("list/watch view: %w", err)
	}
	want := map[string]sim.Pod{}
	takenIPs := map[netip.Addr]string{}
	for _, p := range cp.cluster.Pods() {
		want[p.Key()] = p
		if !p.HostNetwork {
			takenIPs[p.IP] = p.Key()
		}
	}
	var gone []string
	for _, have := range cp.topo.Pods() {
		p, ok := want[have.Name]
		if ok && p.IP == have.IP && p.Node == have.Node && samePorts(have.Ports, cp.registry.Plan(p).ServerPorts) {
			continue
		}
		// A pod that changed, or whose address a new pod takes, goes first.
		if ok || takenIPs[have.IP] != "" {
			if err := cp.removePod(ctx, have.Name); err != nil {
				return err
			}
			continue
		}
		gone = append(gone, have.Name)
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if cp.topo.Pod(name) != nil {
			continue
		}
		p := want[name]
		plan := cp.registry.Plan(p)
		spec := topology.PodSpec{Name: name, Node: p.Node, IP: p.IP, MAC: p.MAC, HostNetwork: p.HostNetwork, Ports: plan.ServerPorts}
		pod, err := cp.topo.AddPod(ctx, spec)
		if err != nil {
			return fmt.Errorf("create pod %s on %s: %w", name, p.Node, err)
		}
		for _, st := range plan.Starts {
			env := addons.Env{Pod: p, Container: st.Container, NS: pod.NS, Client: cp.view.Client(), Gateway: cp.view.GatewayClient(), Log: cp.log,
				Dir:     cp.run.Path(filepath.Join("workloads", p.Namespace+"_"+p.Name+"_"+p.Containers[st.Container].Name)),
				OnStart: cp.run.RecordPID, OnExit: func(pid int) { _ = cp.run.ForgetPID(pid) }}
			inst, err := st.Workload.Start(ctx, env)
			if err != nil {
				// Take the pod down again so that the next change retries it
				// whole rather than leaving it without its workload.
				err = fmt.Errorf("start %s in pod %s (container %s): %w", st.Workload.Name, name, p.Containers[st.Container].Name, err)
				return errors.Join(err, cp.removePod(ctx, name))
			}
			cp.workloads[name] = append(cp.workloads[name], inst)
		}
	}
	if err := cp.push(ctx); err != nil {
		return err
	}
	for _, name := range gone {
		if err := cp.removePod(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) removePod(ctx context.Context, name string) error {
	if err := cp.stopWorkloads(name); err != nil {
		return err
	}
	if err := cp.topo.RemovePod(ctx, name); err != nil {
		return fmt.Errorf("remove pod %s: %w", name, err)
	}
	return nil
}

func samePorts(a, b []topology.Port) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[topology.Port]bool{}
	for _, p := range a {
		set[normPort(p)] = true
	}
	for _, p := range b {
		if !set[normPort(p)] {
			return false
		}
	}
	return true
}

func normPort(p topology.Port) topology.Port {
	if p.Protocol == "" {
		p.Protocol = "TCP"
	}
	return p
}

// stopWorkloads stops the workloads running in pod name.
func (cp *ControlPlane) stopWorkloads(name string) error {
	var errs []error
	for _, inst := range cp.workloads[name] {
		if err := inst.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", name, err))
		}
	}
	delete(cp.workloads, name)
	return errors.Join(errs...)
}

func (cp *ControlPlane) push(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for node, p := range cp.proxies {
		if cp.lost[node] {
			continue // cut off: it hears of no change
		}
		st := cp.cluster.NodeState(node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Push(ctx, st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("program node %s: %w", node, err))
				return
			}
			cp.progMu.Lock()
			cp.lastSync[node] = r
			cp.progMu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// NodeState is what node was last told (a fresh copy from the model).
func (cp *ControlPlane) NodeState(node string) *state.NodeState {
	return cp.cluster.NodeState(node)
}

// LastSync returns each node's reply to the latest push.
func (cp *ControlPlane) LastSync() map[string]agent.SyncReply {
	cp.progMu.Lock()
	defer cp.progMu.Unlock()
	out := make(map[string]agent.SyncReply, len(cp.lastSync))
	for k, v := range cp.lastSync {
		out[k] = v
	}
	return out
}
