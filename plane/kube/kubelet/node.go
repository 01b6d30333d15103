package kubelet

import (
	"context"
	"fmt"
	"maps"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// LeaseNamespace holds the nodes' heartbeat Leases.
const LeaseNamespace = "kube-node-lease"

// Standard node labels the kubelet sets (k8s.io/api/core/v1 well-known
// labels).
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelOS       = "kubernetes.io/os"
	LabelArch     = "kubernetes.io/arch"
)

func (k *Kubelet) nodeLabels() map[string]string {
	l := map[string]string{
		LabelHostname:             k.cfg.NodeName,
		LabelOS:                   "linux",
		LabelArch:                 arch(),
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": arch(),
	}
	maps.Copy(l, k.cfg.Labels)
	return l
}

// register creates the Node (or adopts an existing one: labels merged, the
// pod CIDR set when it has none) and posts its first status.
func (k *Kubelet) register(ctx context.Context) error {
	cidr := k.cfg.PodCIDR.Masked().String()
	nodes := k.cfg.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: k.nodeLabels()},
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	// Created with its status, as the kubelet's initialNode does, so the
	// node lifecycle controller never sees it without a Ready condition
	// (and taints it not-ready for a monitor period).
	node.Status = k.nodeStatus(corev1.NodeStatus{}, metav1.Now())
	got, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	created := err == nil
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			old, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if old.Spec.PodCIDR != "" && old.Spec.PodCIDR != cidr {
				return fmt.Errorf("node %s exists with spec.podCIDR %s, want %s", k.cfg.NodeName, old.Spec.PodCIDR, cidr)
			}
			n := old.DeepCopy()
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			maps.Copy(n.Labels, k.nodeLabels())
			n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
			got, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("kubelet %s: register node: %w", k.cfg.NodeName, err)
	}
	k.nodeMu.Lock()
	k.nodeUID = got.UID
	k.nodeMu.Unlock()
	if len(got.Status.Conditions) == 0 || !created {
		if err := k.postNodeStatus(ctx); err != nil {
			return err
		}
	}
	return k.renewLease(ctx)
}

// nodeStatus fills what the kubelet's node status setters report:
// addresses, capacity, conditions, node info, with heartbeat now.
func (k *Kubelet) nodeStatus(old corev1.NodeStatus, now metav1.Time) corev1.NodeStatus {
	st := old
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP.String()},
		{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
	}
	st.Capacity = k.cfg.Capacity.DeepCopy()
	st.Allocatable = k.cfg.Capacity.DeepCopy()
	st.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          k.cfg.Version,
		OperatingSystem:         "linux",
		Architecture:            arch(),
		OSImage:                 "svcsim",
		KernelVersion:           kernelVersion(),
		ContainerRuntimeVersion: "svcsim://" + k.cfg.Version,
		MachineID:               k.cfg.NodeName,
		SystemUUID:              k.cfg.NodeName,
		BootID:                  k.started.UTC().Format(time.RFC3339),
	}
	want := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
	var conds []corev1.NodeCondition
	for _, c := range want {
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	st.Conditions = conds
	return st
}

func (k *Kubelet) postNodeStatus(ctx context.Context) error {
	nodes := k.cfg.Client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n = n.DeepCopy()
		n.Status = k.nodeStatus(n.Status, metav1.Now())
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubelet %s: post node status: %w", k.cfg.NodeName, err)
	}
	return nil
}

// renewLease creates or renews the node's Lease in kube-node-lease, owned by
// the Node as the kubelet's lease controller does.
func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.cfg.Client.CoordinationV1().Leases(LeaseNamespace)
	k.nodeMu.Lock()
	uid := k.nodeUID
	k.nodeMu.Unlock()
	now := metav1.NewMicroTime(time.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(k.cfg.NodeName),
		LeaseDurationSeconds: ptr.To(int32(k.cfg.LeaseDuration / time.Second)),
		RenewTime:            &now,
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name: k.cfg.NodeName, Namespace: LeaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: k.cfg.NodeName, UID: uid}},
			}, Spec: spec}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l = l.DeepCopy()
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = spec.HolderIdentity, spec.LeaseDurationSeconds, spec.RenewTime
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubelet %s: renew lease: %w", k.cfg.NodeName, err)
	}
	return nil
}

// leaseLoop renews the lease every quarter of its duration.
func (k *Kubelet) leaseLoop() {
	k.every(k.cfg.LeaseDuration/4, k.renewLease)
}

// statusLoop re-posts the node status (the Ready heartbeat).
func (k *Kubelet) statusLoop() {
	k.every(k.cfg.StatusInterval, k.postNodeStatus)
}

func (k *Kubelet) every(d time.Duration, f func(context.Context) error) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(k.ctx, d)
			if err := f(ctx); err != nil && k.ctx.Err() == nil {
				k.logf("%v", err)
			}
			cancel()
		}
	}
}
