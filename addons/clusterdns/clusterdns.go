// Package clusterdns is svcsim's cluster DNS add-on: what CoreDNS's
// kubernetes plugin does, served with github.com/miekg/dns from records it
// computes from the cluster's Services, EndpointSlices and Pods, which it
// reads through client-go informers (Watcher), so it runs unchanged over
// the embedded model's list/watch view or a real API server. It runs inside
// the DNS pod's network namespace, behind the kube-dns Service, so a query
// to the Service's ClusterIP crosses the proxy datapath like any other
// traffic and real `dig` gets real answers.
package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/svcsim/svcsim/addons"
)

// TTL of every answer, CoreDNS's default for the kubernetes plugin.
const TTL = 5

// Source returns the records to answer from; it is called per query so that
// answers follow the cluster.
type Source func() *Records

// Server answers DNS over UDP and TCP.
type Server struct {
	src     Source
	addr    net.Addr
	servers []*dns.Server
	wg      sync.WaitGroup
}

// Start listens on port 53 of every address in ns (UDP and TCP) and serves
// src. Sockets are created inside ns and stay there.
func Start(ns addons.Namespace, src Source) (*Server, error) {
	return StartOn(ns, "0.0.0.0:53", src)
}

// StartOn is Start on a chosen address; port 0 picks a free one (the same
// for UDP and TCP).
func StartOn(ns addons.Namespace, addr string, src Source) (*Server, error) {
	s := &Server{src: src}
	var pc net.PacketConn
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp4", pc.LocalAddr().String()); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listen for DNS on %s in %s: %w", addr, ns.Name(), err)
	}
	s.addr = pc.LocalAddr()
	h := dns.HandlerFunc(s.serve)
	s.servers = []*dns.Server{
		{PacketConn: pc, Handler: h},
		{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second},
	}
	for _, srv := range s.servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = srv.ActivateAndServe()
		}()
		<-started
	}
	return s, nil
}

// Addr is the address the server answers on (UDP and TCP).
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops both servers and waits for them.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := Answer(s.src(), req)
	_ = w.WriteMsg(resp)
}

// Answer builds the response to req from recs: authoritative for the
// cluster domain, NXDOMAIN for unknown names in it, REFUSED outside it (svcsim
// never forwards a query off the machine).
func Answer(recs *Records, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(dns.Fqdn(q.Name))
	domain := dns.Fqdn(recs.Domain)
	rev := strings.HasSuffix(name, ".in-addr.arpa.")
	if !dns.IsSubDomain(domain, name) && !rev {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		return m
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
	}
	if target, ok := recs.CNAME(name); ok {
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(target)})
		return m
	}
	switch q.Qtype {
	case dns.TypeA:
		for _, ip := range recs.A(name) {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.IP(ip.AsSlice())})
		}
	case dns.TypeSRV:
		for _, r := range recs.SRV(name) {
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: dns.Fqdn(r.Target)})
			for _, ip := range recs.A(r.Target) {
				m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(r.Target), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: TTL}, A: net.IP(ip.AsSlice())})
			}
		}
	case dns.TypePTR:
		if ip, ok := reverse(name); ok {
			for _, n := range recs.PTR(ip) {
				m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(n)})
			}
		}
	}
	if len(m.Answer) == 0 && !recs.Exists(name) && !rev {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa(domain))
	}
	return m
}

func soa(domain string) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
		Ns: "ns.dns." + domain, Mbox: "hostmaster." + domain, Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL}
}

// reverse parses "d.c.b.a.in-addr.arpa." into a.b.c.d.
func reverse(name string) (netip.Addr, bool) {
	f := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
	if len(f) != 4 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(f[3] + "." + f[2] + "." + f[1] + "." + f[0])
	return ip, err == nil
}
