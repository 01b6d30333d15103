package sim

import (
	"encoding/json"
	"fmt"
	"time"
)

// snapshotVersion is bumped when the snapshot format changes incompatibly.
const snapshotVersion = 1

type snapshot struct {
	Version int       `json:"version"`
	Config  Config    `json:"config"`
	Created time.Time `json:"created"`
	State   *store    `json:"state"`
}

// Snapshot encodes the whole cluster (configuration and state) as JSON, for
// a process that must pick the simulation up later (see Restore).
func (c *Cluster) Snapshot() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := json.Marshal(snapshot{Version: snapshotVersion, Config: c.cfg, Created: c.created, State: c.st})
	if err != nil {
		return nil, fmt.Errorf("encode cluster snapshot: %w", err)
	}
	return b, nil
}

// Restore rebuilds a cluster from Snapshot's output. clock replaces the
// configuration's clock (nil: time.Now).
func Restore(data []byte, clock func() time.Time) (*Cluster, error) {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode cluster snapshot: %w", err)
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("cluster snapshot version %d, want %d", s.Version, snapshotVersion)
	}
	if s.State == nil {
		return nil, fmt.Errorf("cluster snapshot has no state")
	}
	s.Config.Clock = clock
	if err := s.Config.validate(); err != nil {
		return nil, fmt.Errorf("cluster snapshot: %w", err)
	}
	c := &Cluster{cfg: s.Config, nodes: map[string]*NodeConfig{}, created: s.Created}
	for i := range c.cfg.Nodes {
		n := &c.cfg.Nodes[i]
		c.nodes[n.Name] = n
	}
	// A snapshot written by hand or by an older build may lack maps.
	fresh := newStore(s.Config.Seed)
	st := s.State
	if st.Namespaces == nil {
		st.Namespaces = fresh.Namespaces
	}
	if st.Pods == nil {
		st.Pods = fresh.Pods
	}
	if st.Deployments == nil {
		st.Deployments = fresh.Deployments
	}
	if st.DaemonSets == nil {
		st.DaemonSets = fresh.DaemonSets
	}
	if st.Services == nil {
		st.Services = fresh.Services
	}
	if st.Endpoints == nil {
		st.Endpoints = fresh.Endpoints
	}
	if st.Ingresses == nil {
		st.Ingresses = fresh.Ingresses
	}
	noSlices := st.EndpointSlices == nil
	if noSlices {
		st.EndpointSlices = fresh.EndpointSlices
		st.SliceRNG = fresh.SliceRNG
	}
	if st.NodeLabels == nil {
		st.NodeLabels = fresh.NodeLabels
	}
	if st.Owner == nil {
		st.Owner = fresh.Owner
	}
	if st.Seq == nil {
		st.Seq = fresh.Seq
	}
	if st.LastIP == nil {
		st.LastIP = fresh.LastIP
	}
	for _, n := range c.cfg.Nodes {
		if st.NodeLabels[n.Name] == nil {
			st.NodeLabels[n.Name] = copyLabels(n.Labels)
		}
	}
	c.st = st
	if noSlices {
		// A snapshot from before EndpointSlices: the controllers write
		// them now, since the proxies' state is derived from them.
		if err := c.commit(c.begin()); err != nil {
			return nil, fmt.Errorf("cluster snapshot: %w", err)
		}
	}
	return c, nil
}
