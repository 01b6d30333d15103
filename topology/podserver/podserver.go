// Package podserver is the built-in workload of a simulated pod: the seed's
// "getip" HTTP server plus TCP and UDP echo, all answering with the pod's
// identity so a scenario can tell which backend a request reached.
//
// Every socket is created inside the pod's network namespace (through a
// Runner such as netns.NS) and therefore stays there; the goroutines serving
// them belong to the Server and are all gone when Stop returns.
//
// Per TCP port one listener serves both protocols: a connection whose first
// bytes are an HTTP request line ("GET ", "POST ", ...) is handed to an HTTP
// server, any other connection is a line echo.
//
//	GET /info    {"Code":0,"Msg":"success","IpInfo":[{"Ip":"<pod ip>","Mac":"<eth0 mac>"}]}
//	GET /name    the pod name
//	GET /client  the remote "ip:port" the server saw
//	GET /        the pod name
//	ANY /echo    the request body
//
// Every HTTP response carries the header "X-Pod: <pod name>"; bodies end
// without a newline, as the seed's getip does. The TCP echo answers each line
// with "<pod> <remote ip:port> <line>\n" until the client half-closes; UDP
// answers each datagram with "<pod> <remote ip:port> <payload>".
package podserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Port is one container port the servers listen on.
type Port struct {
	Port int32
	// Protocol is "TCP" or "UDP"; empty means TCP.
	Protocol string
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.proto()) }

func (p Port) proto() string {
	if p.Protocol == "" {
		return "TCP"
	}
	return strings.ToUpper(p.Protocol)
}

// Runner runs f in the network namespace the sockets must live in;
// *netns.NS satisfies it.
type Runner interface {
	Do(f func() error) error
}

// Config describes the pod a Server answers for.
type Config struct {
	// Name is the pod name ("namespace/name") used in every answer.
	Name string
	// IP and MAC are reported by GET /info.
	IP  netip.Addr
	MAC net.HardwareAddr
	// Ports to listen on.
	Ports []Port
	// Bind is the address to bind; the zero value means every address.
	Bind netip.Addr
	// Counters, if set, accumulate across servers (a pod keeps its counts
	// when its servers are stopped and started again).
	Counters *Counters
}

// Counters count what a pod's servers served.
type Counters struct {
	HTTP     atomic.Uint64 // HTTP requests answered
	TCPConns atomic.Uint64 // echo connections accepted
	TCPLines atomic.Uint64 // echo lines answered
	UDP      atomic.Uint64 // datagrams answered
}

// Stats is a snapshot of Counters.
type Stats struct {
	HTTP, TCPConns, TCPLines, UDP uint64
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() Stats {
	return Stats{HTTP: c.HTTP.Load(), TCPConns: c.TCPConns.Load(), TCPLines: c.TCPLines.Load(), UDP: c.UDP.Load()}
}

// Total is the number of requests of any kind (HTTP requests, echo lines,
// datagrams).
func (s Stats) Total() uint64 { return s.HTTP + s.TCPLines + s.UDP }

// Server is a running set of listeners for one pod.
type Server struct {
	cfg      Config
	counters *Counters
	info     []byte

	listeners []net.Listener
	packets   []net.PacketConn
	httpLn    *chanListener
	http      *http.Server

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool

	wg     sync.WaitGroup // accept loops, UDP loops, classifiers, echo handlers
	httpWG sync.WaitGroup // HTTP connections (via ConnState)
}

// Start opens every port of cfg inside in's namespace (the current one if in
// is nil) and serves them until Stop. If a port cannot be opened, nothing is
// left open and the error names the port.
func Start(cfg Config, in Runner) (*Server, error) {
	if cfg.Name == "" {
		return nil, errors.New("podserver: empty pod name")
	}
	s := &Server{
		cfg:      cfg,
		counters: cfg.Counters,
		info:     InfoJSON(cfg.IP, cfg.MAC),
		conns:    map[net.Conn]struct{}{},
	}
	if s.counters == nil {
		s.counters = new(Counters)
	}
	open := func() error {
		for _, p := range cfg.Ports {
			if p.Port < 0 || p.Port > 65535 { // 0 picks a free port (tests)
				return fmt.Errorf("pod %s: invalid port %d", cfg.Name, p.Port)
			}
			network, addr := s.addr(p)
			switch p.proto() {
			case "TCP":
				ln, err := net.Listen("tcp"+network, addr)
				if err != nil {
					return fmt.Errorf("pod %s: listen %s: %w", cfg.Name, p, err)
				}
				s.listeners = append(s.listeners, ln)
			case "UDP":
				pc, err := net.ListenPacket("udp"+network, addr)
				if err != nil {
					return fmt.Errorf("pod %s: listen %s: %w", cfg.Name, p, err)
				}
				s.packets = append(s.packets, pc)
			default:
				return fmt.Errorf("pod %s: port %d: unsupported protocol %q", cfg.Name, p.Port, p.Protocol)
			}
		}
		return nil
	}
	var err error
	if in == nil {
		err = open()
	} else {
		err = in.Do(open)
	}
	if err != nil {
		s.closeSockets()
		return nil, err
	}

	s.httpLn = newChanListener(addrOrNil(s.listeners))
	s.http = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.httpWG.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.httpWG.Done()
			}
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(s.httpLn) // returns when httpLn is closed
	}()
	for _, ln := range s.listeners {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	for _, pc := range s.packets {
		s.wg.Add(1)
		go s.udpLoop(pc)
	}
	return s, nil
}

func (s *Server) addr(p Port) (network, addr string) {
	if !s.cfg.Bind.IsValid() || s.cfg.Bind.IsUnspecified() && s.cfg.Bind.Is4() {
		return "4", net.JoinHostPort("0.0.0.0", strconv.Itoa(int(p.Port)))
	}
	if s.cfg.Bind.Is4() {
		return "4", net.JoinHostPort(s.cfg.Bind.String(), strconv.Itoa(int(p.Port)))
	}
	return "6", net.JoinHostPort(s.cfg.Bind.String(), strconv.Itoa(int(p.Port)))
}

func addrOrNil(lns []net.Listener) net.Addr {
	if len(lns) == 0 {
		return nil
	}
	return lns[0].Addr()
}

// Name is the pod name the server answers with.
func (s *Server) Name() string { return s.cfg.Name }

// Counters returns the live counters.
func (s *Server) Counters() *Counters { return s.counters }

// Stats is a snapshot of the counters.
func (s *Server) Stats() Stats { return s.counters.Snapshot() }

// TCPAddrs and UDPAddrs are the bound addresses (useful with port 0 in tests).
func (s *Server) TCPAddrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// UDPAddrs returns the bound UDP addresses.
func (s *Server) UDPAddrs() []net.Addr {
	out := make([]net.Addr, len(s.packets))
	for i, pc := range s.packets {
		out[i] = pc.LocalAddr()
	}
	return out
}

// Stop closes every listener and connection and waits until every goroutine
// of the server has returned. Afterwards the pod's ports refuse connections
// (the kernel answers a SYN with RST and a datagram with ICMP port
// unreachable), as when a backend process is killed. Stop is idempotent.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()

	err := s.closeSockets()
	s.httpLn.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	// Accept loops, classifiers, echo handlers and the HTTP Serve loop end.
	s.wg.Wait()
	// Every HTTP connection is now known to the HTTP server: close them
	// (idle keep-alives included) and wait for their goroutines.
	if cerr := s.http.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("pod %s: close http server: %w", s.cfg.Name, cerr))
	}
	s.httpWG.Wait()
	return err
}

func (s *Server) closeSockets() error {
	var errs []error
	for _, ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("pod %s: close %s: %w", s.cfg.Name, ln.Addr(), err))
		}
	}
	for _, pc := range s.packets {
		if err := pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("pod %s: close %s: %w", s.cfg.Name, pc.LocalAddr(), err))
		}
	}
	return errors.Join(errs...)
}

// track registers c so Stop closes it; it reports false (and closes c) if
// the server is already stopping.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE, ECONNABORTED): back off briefly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			continue
		}
		s.wg.Add(1)
		go s.classify(c)
	}
}

// httpMethods start an HTTP/1.x request line.
var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

type verdict int

const (
	undecided verdict = iota
	isHTTP
	isEcho
)

// sniff decides from the first bytes of a connection whether it speaks HTTP.
func sniff(b []byte) verdict {
	prefix := false
	for _, m := range httpMethods {
		if len(b) >= len(m) {
			if string(b[:len(m)]) == m {
				return isHTTP
			}
		} else if string(b) == m[:len(b)] {
			prefix = true
		}
	}
	if prefix {
		return undecided
	}
	return isEcho
}

// classify reads just enough of c to tell HTTP from echo, never waiting for
// more bytes than a method name needs, so a short echo line is answered at
// once.
func (s *Server) classify(c net.Conn) {
	defer s.wg.Done()
	r := bufio.NewReader(c)
	v := undecided
	for n := 1; v == undecided; n++ {
		b, err := r.Peek(n)
		if err != nil {
			if len(b) == 0 {
				// Closed before saying anything (a connect-only probe).
				s.untrack(c)
				_ = c.Close()
				return
			}
			v = isEcho
			break
		}
		// Decide on everything already buffered, not just n bytes.
		if more, _ := r.Peek(r.Buffered()); len(more) > n {
			b = more
			n = len(more)
		}
		v = sniff(b)
	}
	if v == isHTTP {
		// From here on the HTTP server owns c (and closes it on Stop).
		s.untrack(c)
		if !s.httpLn.deliver(&peekedConn{Conn: c, r: r}) {
			_ = c.Close()
		}
		return
	}
	defer s.untrack(c)
	defer c.Close()
	s.echo(c, r)
}

// echo answers each line with "<pod> <remote> <line>\n". When the client
// half-closes, the replies already due are written and the write side is
// closed too.
func (s *Server) echo(c net.Conn, r *bufio.Reader) {
	s.counters.TCPConns.Add(1)
	remote := c.RemoteAddr().String()
	w := bufio.NewWriter(c)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			s.counters.TCPLines.Add(1)
			fmt.Fprintf(w, "%s %s %s\n", s.cfg.Name, remote, line)
			// Flush when no more input is waiting, so interactive clients see
			// each answer while pipelined input is answered in batches.
			if r.Buffered() == 0 {
				if werr := w.Flush(); werr != nil {
					return
				}
			}
		}
		if err != nil {
			_ = w.Flush()
			if cw, ok := c.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

func (s *Server) udpLoop(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.counters.UDP.Add(1)
		reply := fmt.Appendf(nil, "%s %s ", s.cfg.Name, from)
		reply = append(reply, buf[:n]...)
		_, _ = pc.WriteTo(reply, from)
	}
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	text := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	}
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(s.info)))
		_, _ = w.Write(s.info)
	})
	mux.HandleFunc("/name", func(w http.ResponseWriter, _ *http.Request) { text(w, s.cfg.Name) })
	mux.HandleFunc("/client", func(w http.ResponseWriter, r *http.Request) { text(w, r.RemoteAddr) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) { text(w, s.cfg.Name) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.counters.HTTP.Add(1)
		w.Header().Set("X-Pod", s.cfg.Name)
		mux.ServeHTTP(w, r)
	})
}

// InfoJSON is the seed's getip answer for ip and mac, byte for byte:
// {"Code":0,"Msg":"success","IpInfo":[{"Ip":"10.244.2.3","Mac":"52:91:74:8a:ee:96"}]}
func InfoJSON(ip netip.Addr, mac net.HardwareAddr) []byte {
	type ipInfo struct {
		IP  string `json:"Ip"`
		MAC string `json:"Mac"`
	}
	v := struct {
		Code   int
		Msg    string
		IPInfo []ipInfo `json:"IpInfo"`
	}{0, "success", []ipInfo{{ip.String(), strings.ToLower(mac.String())}}}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // cannot happen for these types
	}
	return b
}

// peekedConn replays the bytes the classifier buffered.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite passes half-close through to the TCP connection.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// chanListener is a net.Listener fed with connections already accepted (and
// classified as HTTP) by the accept loops.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		select {
		case <-l.done:
			// Lost a race with Close: the HTTP server might never close c.
			_ = c.Close()
			return nil, net.ErrClosed
		default:
			return c, nil
		}
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr {
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

var _ net.Listener = (*chanListener)(nil)
