package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

var everything = labels.Everything()

// podWorker owns one pod bound to the node, from its first sighting to its
// deletion: only its goroutine (run) touches the sandbox and the container
// states; update, gone and poke only signal it.
type podWorker struct {
	k        *Kubelet
	uid      types.UID
	ns, name string
	key      string // "namespace/name", the sandbox's name
	notify   chan struct{}

	mu     sync.Mutex
	latest *corev1.Pod
	isGone bool
	pinfo  *PodInfo
	// readyOverride, when set, replaces the containers' readiness
	// (Kubelet.SetReady); overrideNew says run has not posted it yet.
	readyOverride *bool
	overrideNew   bool

	// Owned by run.
	sandbox   Sandbox
	ip        netip.Addr
	dir       string
	ports     []topology.Port
	ctrs      []*ctrState
	startTime metav1.Time
	waiting   string // why containers are not running yet
	terminal  bool
	posted    *corev1.PodStatus
}

// ctrState is one container as the kubelet tracks it.
type ctrState struct {
	spec       corev1.Container
	id         string
	running    bool
	started    bool // startup probe passed (or none)
	ready      bool
	startedAt  metav1.Time
	restarts   int32
	lastTerm   *corev1.ContainerStateTerminated
	terminated *corev1.ContainerStateTerminated
	workload   *Workload
	inst       Instance
	env        []string
	mounts     []Mount
	startup    *prober
	liveness   *prober
	readiness  *prober
}

func newPodWorker(k *Kubelet, pod *corev1.Pod) *podWorker {
	return &podWorker{k: k, uid: pod.UID, ns: pod.Namespace, name: pod.Name, key: pod.Namespace + "/" + pod.Name,
		notify: make(chan struct{}, 1), latest: pod, dir: podDir(k.cfg.Dir, pod.UID)}
}

func (w *podWorker) signal() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.latest = pod
	w.mu.Unlock()
	w.signal()
}

func (w *podWorker) gone() {
	w.mu.Lock()
	w.isGone = true
	w.mu.Unlock()
	w.signal()
}

func (w *podWorker) poke() { w.signal() }

func (w *podWorker) current() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest, w.isGone
}

func (w *podWorker) info() (PodInfo, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pinfo == nil {
		return PodInfo{}, false
	}
	return *w.pinfo, true
}

func (w *podWorker) logf(format string, a ...any) {
	w.k.logf("pod %s: %s", w.key, fmt.Sprintf(format, a...))
}

// run drives the pod: set it up (retrying with backoff while, say, a
// ConfigMap is missing), then probe it until it is deleted. It reports
// whether the pod is finished (false: the kubelet is closing and Close
// tears the sandbox down).
func (w *podWorker) run(ctx context.Context) bool {
	w.startTime = metav1.Now()
	backoff := 250 * time.Millisecond
	for {
		pod, gone := w.current()
		if gone || pod.DeletionTimestamp != nil {
			return w.finish(ctx)
		}
		err := w.setup(ctx, pod)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		w.waiting = err.Error()
		w.logf("not started: %v", err)
		w.postStatus(ctx)
		select {
		case <-ctx.Done():
			return false
		case <-w.notify:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	w.waiting = ""
	// Probes without an initial delay run before the first post, so a pod
	// that is ready at once is reported Running and Ready in one update.
	w.runProbes(ctx)
	w.postStatus(ctx)
	for {
		var due <-chan time.Time
		var timer *time.Timer
		if next, ok := w.nextProbe(); ok {
			timer = time.NewTimer(time.Until(next))
			due = timer.C
		}
		stop := func() {
			if timer != nil {
				timer.Stop()
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return false
		case <-w.notify:
			stop()
			pod, gone := w.current()
			if gone || pod.DeletionTimestamp != nil {
				return w.finish(ctx)
			}
			w.refreshPorts(ctx, pod)
			if w.takeOverride() {
				w.postStatus(ctx)
			}
		case <-due:
			w.runProbes(ctx)
			w.postStatus(ctx)
		}
	}
}

// setup prepares the pod's files, builds its sandbox and starts its
// containers. On error nothing of it is left running.
func (w *podWorker) setup(ctx context.Context, pod *corev1.Pod) (err error) {
	k := w.k
	hostNet := pod.Spec.HostNetwork
	defer func() {
		if err != nil {
			err = errors.Join(err, w.teardown(context.Background()))
		}
	}()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	// Volumes first, as the kubelet waits for them before it makes the
	// sandbox: an address is taken (host-local order) only when the pod
	// can start. Downward-API volumes cannot ask for the pod IP.
	vols, err := k.writeVolumes(ctx, pod, "", w.dir)
	if err != nil {
		return err
	}
	ip := k.cfg.NodeIP
	if !hostNet {
		want, _ := netip.ParseAddr(pod.Status.PodIP)
		if ip, err = k.ipam.allocate(w.key, want); err != nil {
			return err
		}
	}
	w.ip = ip
	resolv, hosts, scratch := filepath.Join(w.dir, "resolv.conf"), filepath.Join(w.dir, "etc-hosts"), filepath.Join(w.dir, "scratch")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(resolv, []byte(k.resolvConf(pod)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(hosts, []byte(k.hostsFile(pod, ip.String())), 0o644); err != nil {
		return err
	}
	svcEnv, err := k.serviceEnv(pod)
	if err != nil {
		return err
	}
	w.ctrs = nil
	for i := range pod.Spec.Containers {
		c := &ctrState{spec: pod.Spec.Containers[i]}
		c.id = containerID(pod.UID, c.spec.Name, 0)
		if c.env, err = k.containerEnv(ctx, pod, &c.spec, ip.String(), svcEnv); err != nil {
			return fmt.Errorf("container %s: %w", c.spec.Name, err)
		}
		c.mounts = []Mount{{Path: "/etc/resolv.conf", Source: resolv}}
		if !hostNet {
			c.mounts = append(c.mounts, Mount{Path: "/etc/hosts", Source: hosts})
		}
		for _, vm := range c.spec.VolumeMounts {
			src, ok := vols[vm.Name]
			if !ok {
				return fmt.Errorf("container %s: volume mount %s: no such volume", c.spec.Name, vm.Name)
			}
			if vm.SubPath != "" {
				src = filepath.Join(src, filepath.Clean("/"+vm.SubPath))
			}
			c.mounts = append(c.mounts, Mount{Path: vm.MountPath, Source: src, ReadOnly: vm.ReadOnly})
		}
		if k.cfg.Workloads != nil {
			if wl, ok := k.cfg.Workloads(pod, &c.spec); ok {
				c.workload = &wl
			}
		}
		w.ctrs = append(w.ctrs, c)
	}
	w.ports = w.builtinPorts(pod)
	sb, err := k.cfg.Network.AddPod(ctx, topology.PodSpec{Name: w.key, Node: k.cfg.NodeName, IP: ip, HostNetwork: hostNet, Ports: w.ports})
	if err != nil {
		return fmt.Errorf("create sandbox: %w", err)
	}
	w.sandbox = sb
	for _, c := range w.ctrs {
		if err := w.startContainer(ctx, pod, c); err != nil {
			return err
		}
	}
	info := PodInfo{Namespace: w.ns, Name: w.name, UID: w.uid, IP: ip, ResolvConf: resolv, Hosts: hosts, Scratch: scratch}
	if n := sb.Netns(); n != nil {
		info.Netns = n.Name()
	}
	if len(w.ctrs) > 0 {
		info.Env, info.Mounts = w.ctrs[0].env, w.ctrs[0].mounts
	}
	w.mu.Lock()
	w.pinfo = &info
	w.mu.Unlock()
	w.logf("running on %v (sandbox %s)", ip, info.Netns)
	return nil
}

func containerID(uid types.UID, name string, restart int32) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", uid, name, restart)))
	return hex.EncodeToString(h[:])
}

// startContainer starts c's workload (the built-in servers run with the
// sandbox) and resets its probes.
func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, c *ctrState) error {
	if c.workload != nil && c.workload.Start != nil {
		dir := w.workloadDir(c)
		if dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("container %s: %w", c.spec.Name, err)
			}
		}
		inst, err := c.workload.Start(ctx, Container{Pod: pod, Container: &c.spec, Sandbox: w.sandbox, IP: w.ip, Env: c.env,
			Mounts: c.mounts, Scratch: filepath.Join(w.dir, "scratch"), Dir: dir, OnStart: w.k.cfg.OnStart, OnExit: w.k.cfg.OnExit,
			Client: w.k.cfg.WorkloadClient, Gateway: w.k.cfg.WorkloadGateway, Log: w.k.cfg.Log})
		if err != nil {
			return fmt.Errorf("container %s: start %s: %w", c.spec.Name, c.workload.Name, err)
		}
		c.inst = inst
	}
	now := time.Now()
	c.running, c.terminated = true, nil
	c.startedAt = metav1.NewTime(now)
	c.startup = newProber(c.spec.StartupProbe, now)
	c.liveness = newProber(c.spec.LivenessProbe, now)
	c.readiness = newProber(c.spec.ReadinessProbe, now)
	c.started = c.startup == nil
	c.ready = c.started && c.readiness == nil
	return nil
}

// workloadDir is c's workload directory ("" without Config.WorkloadDir).
func (w *podWorker) workloadDir(c *ctrState) string {
	if w.k.cfg.WorkloadDir == "" {
		return ""
	}
	return filepath.Join(w.k.cfg.WorkloadDir, w.ns+"_"+w.name+"_"+c.spec.Name)
}

// stopContainer ends c's workload; the caller stops the built-in servers.
func (w *podWorker) stopContainer(c *ctrState, exit int32, reason string) error {
	var err error
	if c.inst != nil {
		err = c.inst.Stop()
		c.inst = nil
	}
	if c.running {
		c.terminated = &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, StartedAt: c.startedAt,
			FinishedAt: metav1.Now(), ContainerID: "svcsim://" + c.id}
	}
	c.running, c.ready, c.started = false, false, false
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.spec.Name, err)
	}
	return nil
}

// builtinPorts is where the built-in servers listen: the container ports of
// containers without a workload of their own, and every numeric targetPort
// of a Service selecting the pod that no other workload of the pod serves
// (manifests that omit containerPort, like the seed's, still answer there,
// as the real image would; the DNS pod's port 53 is its DNS server's).
func (w *podWorker) builtinPorts(pod *corev1.Pod) []topology.Port {
	seen := map[topology.Port]bool{}
	owned := map[topology.Port]bool{}
	var out []topology.Port
	add := func(port int32, proto corev1.Protocol) {
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		p := topology.Port{Port: port, Protocol: string(proto)}
		if port > 0 && !seen[p] && !owned[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	builtin := 0
	for _, c := range w.ctrs {
		if c.workload != nil && !c.workload.Builtin {
			for _, p := range c.workload.Serves {
				if p.Protocol == "" {
					p.Protocol = string(corev1.ProtocolTCP)
				}
				owned[p] = true
			}
		}
	}
	for _, c := range w.ctrs {
		if c.workload != nil && !c.workload.Builtin {
			continue
		}
		builtin++
		for _, cp := range c.spec.Ports {
			add(cp.ContainerPort, cp.Protocol)
		}
	}
	if builtin > 0 {
		svcs, _ := w.k.svcLst.Services(pod.Namespace).List(everything)
		for _, s := range svcs {
			if !selects(s, pod) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if sp.TargetPort.IntValue() > 0 {
					add(int32(sp.TargetPort.IntValue()), sp.Protocol)
				} else if sp.TargetPort.StrVal == "" {
					add(sp.Port, sp.Protocol)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// refreshPorts restarts the built-in servers when a Service change moved
// the ports they should listen on.
func (w *podWorker) refreshPorts(ctx context.Context, pod *corev1.Pod) {
	if w.sandbox == nil {
		return
	}
	ports := w.builtinPorts(pod)
	if equality.Semantic.DeepEqual(ports, w.ports) {
		return
	}
	if err := w.sandbox.SetPorts(ports); err != nil {
		w.logf("listen on %v: %v", ports, err)
		return
	}
	w.ports = ports
}

// finish handles deletion. A pod being deleted gracefully keeps serving
// for the drain or its preStop sleep, the longer (at most its grace
// period), as a server does between SIGTERM and its exit, so kube-proxy
// sees a terminating endpoint; then its containers stop, its terminal status is posted, its sandbox is removed
// and it is deleted with grace 0. A pod already gone from the API is only
// torn down.
func (w *podWorker) finish(ctx context.Context) bool {
	pod, gone := w.current()
	if !gone && w.sandbox != nil {
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		drain := min(w.k.cfg.Drain, time.Duration(grace)*time.Second)
		// A preStop sleep keeps the containers serving that long before
		// their SIGTERM (at most the grace period).
		drain = max(drain, sim.TerminationDelay(pod))
		w.logf("terminating: draining %v", drain)
		if w.takeOverride() {
			w.postStatus(ctx)
		}
		t := time.NewTimer(drain)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
				break wait
			case <-w.notify:
				if _, gone = w.current(); gone {
					t.Stop()
					break wait
				}
				// A terminating pod's readiness still changes (a server
				// failing its probe after SIGTERM): post it.
				if w.takeOverride() {
					w.postStatus(ctx)
				}
			}
		}
	}
	var errs []error
	for _, c := range w.ctrs {
		errs = append(errs, w.stopContainer(c, 0, "Completed"))
	}
	if w.sandbox != nil {
		errs = append(errs, w.sandbox.StopServers())
	}
	w.terminal = true
	if !gone {
		w.postStatus(ctx)
	}
	errs = append(errs, w.teardown(ctx))
	if !gone {
		err := w.k.cfg.Client.CoreV1().Pods(w.ns).Delete(ctx, w.name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &w.uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		w.logf("finish: %v", err)
	} else {
		w.logf("deleted")
	}
	return true
}

// teardown stops whatever still runs and removes the sandbox, the pod's
// files and its address.
func (w *podWorker) teardown(ctx context.Context) error {
	var errs []error
	for _, c := range w.ctrs {
		if c.inst != nil {
			errs = append(errs, c.inst.Stop())
			c.inst = nil
		}
		if d := w.workloadDir(c); d != "" && c.workload != nil && c.workload.Start != nil {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	if w.sandbox != nil {
		errs = append(errs, w.k.cfg.Network.RemovePod(ctx, w.key))
		w.sandbox = nil
	}
	w.mu.Lock()
	w.pinfo = nil
	w.mu.Unlock()
	if w.ip.IsValid() && w.ip != w.k.cfg.NodeIP {
		w.k.ipam.release(w.ip)
	}
	errs = append(errs, os.RemoveAll(w.dir))
	return errors.Join(errs...)
}
