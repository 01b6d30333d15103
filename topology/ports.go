package topology

import (
	"context"
	"fmt"
	"slices"
)

// SetPodPorts changes where a pod's built-in servers listen: when ports
// differ from the current ones (in any order), running servers are
// restarted on the new set. A control plane that learns of a Service's
// targetPort after the pod started uses it, as the image would have been
// listening there all along.
func (t *Topology) SetPodPorts(ctx context.Context, name string, ports []Port) error {
	t.ops.RLock()
	defer t.ops.RUnlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("set ports of %q: %w", name, err)
	}
	t.mu.Lock()
	p := t.pods[name]
	t.mu.Unlock()
	if p == nil {
		return fmt.Errorf("set ports of %q: no such pod", name)
	}
	changed, err := p.setPorts(ports)
	if err != nil || !changed {
		return err
	}
	return t.writeState()
}

func (p *Pod) setPorts(ports []Port) (bool, error) {
	p.mu.Lock()
	if samePortSet(p.Ports, ports) {
		p.mu.Unlock()
		return false, nil
	}
	running := p.server != nil
	p.mu.Unlock()
	if running {
		if err := p.StopServers(); err != nil {
			return false, err
		}
	}
	p.mu.Lock()
	p.Ports = slices.Clone(ports)
	p.mu.Unlock()
	if running {
		if err := p.StartServers(); err != nil {
			return true, err
		}
	}
	return true, nil
}

func samePortSet(a, b []Port) bool {
	norm := func(ps []Port) []string {
		out := make([]string, 0, len(ps))
		for _, p := range ps {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}
