package ipvs

import (
	"errors"
	"net/netip"
	"sort"
	"time"

	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
)

// terminatingVS tracks the weight-0 real servers of one virtual server.
type terminatingVS struct {
	vs    ipvsutil.VirtualServer
	since map[netip.AddrPort]time.Time
}

// retire removes an unwanted real server: at once when it is UDP or has no
// connections, else by setting weight 0 and tracking it until they are gone.
func (p *Proxier) retire(iv ipvsutil.Interface, vs *ipvsutil.VirtualServer, rs *ipvsutil.RealServer) error {
	if vs.Protocol == ipvsutil.UDP || rs.ActiveConn+rs.InactiveConn == 0 {
		if err := iv.DeleteDestination(vs, realServer(rs.Key(), rs.Weight)); err != nil && !ipvsutil.IsNotFound(err) {
			return err
		}
		p.untrack(vs.Key(), rs.Key())
		return nil
	}
	if rs.Weight != 0 {
		if err := iv.UpdateDestination(vs, realServer(rs.Key(), 0)); err != nil {
			return err
		}
	}
	t := p.terminating[vs.Key()]
	if t == nil {
		t = &terminatingVS{vs: *vs, since: map[netip.AddrPort]time.Time{}}
		p.terminating[vs.Key()] = t
	}
	if _, ok := t.since[rs.Key()]; !ok {
		t.since[rs.Key()] = p.cfg.Now()
	}
	return nil
}

func (p *Proxier) untrack(k ipvsutil.Key, ap netip.AddrPort) {
	if t := p.terminating[k]; t != nil {
		delete(t.since, ap)
		if len(t.since) == 0 {
			delete(p.terminating, k)
		}
	}
}

// Terminating lists the real servers waiting for their connections to end,
// as "TCP 10.96.0.1:80 -> 10.244.1.5:8080", sorted.
func (p *Proxier) Terminating() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, t := range p.terminating {
		for ap := range t.since {
			out = append(out, k.String()+" -> "+ap.String())
		}
	}
	sort.Strings(out)
	return out
}

// reap deletes terminating real servers whose connections are gone.
func (p *Proxier) reap(iv ipvsutil.Interface) error {
	var errs []error
	keys := make([]ipvsutil.Key, 0, len(p.terminating))
	for k := range p.terminating {
		keys = append(keys, k)
	}
	for _, k := range keys {
		t := p.terminating[k]
		vs := t.vs
		cur, err := iv.Destinations(&vs)
		if ipvsutil.IsNotFound(err) {
			delete(p.terminating, k)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		present := map[netip.AddrPort]bool{}
		for _, rs := range cur {
			present[rs.Key()] = true
			if _, ok := t.since[rs.Key()]; ok {
				if err := p.retire(iv, &vs, rs); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for ap := range t.since {
			if !present[ap] {
				p.untrack(k, ap)
			}
		}
	}
	return errors.Join(errs...)
}

// Reap runs one round of the reaper now (tests, and callers without one).
func (p *Proxier) Reap() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reap(p.cfg.IPVS)
}

func (p *Proxier) startReaper() {
	stop, done := make(chan struct{}), make(chan struct{})
	p.reapStop, p.reapDone = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(p.cfg.ReapInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mu.Lock()
				// An error here is retried on the next tick and
				// by the next Sync, which re-reads these servers.
				_ = p.reap(p.cfg.IPVS)
				p.mu.Unlock()
			}
		}
	}()
}

// stopReaper stops the background goroutine; call without p.mu held.
func (p *Proxier) stopReaper() {
	p.mu.Lock()
	stop, done := p.reapStop, p.reapDone
	p.reapStop, p.reapDone = nil, nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}
