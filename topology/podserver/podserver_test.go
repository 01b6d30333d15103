package podserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the servers in the current namespace on 127.0.0.1 with
// kernel-chosen ports: no root needed.

var testMAC = net.HardwareAddr{0x52, 0x91, 0x74, 0x8a, 0xee, 0x96}

func start(t *testing.T, ports ...Port) *Server {
	t.Helper()
	s, err := Start(Config{
		Name:  "default/getip-1",
		IP:    netip.MustParseAddr("10.244.2.3"),
		MAC:   testMAC,
		Ports: ports,
		Bind:  netip.MustParseAddr("127.0.0.1"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// waitGoroutines waits until the goroutine count is back to base: the check
// for leaks (retried because exiting goroutines take a moment to vanish).
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d > %d at start\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInfoJSONExact(t *testing.T) {
	got := string(InfoJSON(netip.MustParseAddr("10.244.2.3"), net.HardwareAddr{0x52, 0x91, 0x74, 0x8A, 0xEE, 0x96}))
	want := `{"Code":0,"Msg":"success","IpInfo":[{"Ip":"10.244.2.3","Mac":"52:91:74:8a:ee:96"}]}`
	if got != want {
		t.Fatalf("InfoJSON =\n%s\nwant\n%s", got, want)
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]verdict{
		"G":              undecided,
		"GET":            undecided,
		"GET /info HTTP": isHTTP,
		"POST / HTTP":    isHTTP,
		"HEAD ":          isHTTP,
		"GETX":           isEcho,
		"GET\n":          isEcho,
		"hello\n":        isEcho,
		"P":              undecided,
		"PU":             undecided,
		"PX":             isEcho,
		"\x00":           isEcho,
	} {
		if got := sniff([]byte(in)); got != want {
			t.Errorf("sniff(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHTTP(t *testing.T) {
	s := start(t, Port{Port: 0})
	base := "http://" + s.TCPAddrs()[0].String()
	reused := 0
	var localAddrs []string
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
			localAddrs = append(localAddrs, i.Conn.LocalAddr().String())
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Pod"); got != "default/getip-1" {
			t.Errorf("GET %s: X-Pod = %q", path, got)
		}
		return resp, string(b)
	}
	resp, body := get("/info")
	if want := `{"Code":0,"Msg":"success","IpInfo":[{"Ip":"10.244.2.3","Mac":"52:91:74:8a:ee:96"}]}`; body != want {
		t.Errorf("/info = %q, want %q", body, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/info Content-Type = %q", ct)
	}
	if _, body := get("/name"); body != "default/getip-1" {
		t.Errorf("/name = %q", body)
	}
	if _, body := get("/client"); body != localAddrs[len(localAddrs)-1] {
		t.Errorf("/client = %q, want the client's address %q", body, localAddrs[len(localAddrs)-1])
	}
	if resp, _ := get("/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope status %d", resp.StatusCode)
	}
	if reused != 3 {
		t.Errorf("keep-alive: %d of 4 requests reused the connection, want 3", reused)
	}
	if got := s.Stats().HTTP; got != 4 {
		t.Errorf("HTTP counter = %d, want 4", got)
	}
}

func TestEchoInteractiveAndHalfClose(t *testing.T) {
	s := start(t, Port{Port: 0, Protocol: "TCP"})
	c, err := net.Dial("tcp", s.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	me := c.LocalAddr().String()
	// A short line is answered before anything else is sent.
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "default/getip-1 " + me + " hi\n"; line != want {
		t.Fatalf("echo = %q, want %q", line, want)
	}
	// Pipelined lines, a final line without newline, then half-close: every
	// answer arrives and then EOF.
	if _, err := io.WriteString(c, "GET\nb\r\nlast"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	p := "default/getip-1 " + me + " "
	if want := p + "GET\n" + p + "b\n" + p + "last\n"; string(rest) != want {
		t.Fatalf("after half-close got %q, want %q", rest, want)
	}
	if st := s.Stats(); st.TCPConns != 1 || st.TCPLines != 4 {
		t.Errorf("stats = %+v, want 1 conn 4 lines", st)
	}
}

func TestUDP(t *testing.T) {
	s := start(t, Port{Port: 0, Protocol: "UDP"})
	c, err := net.Dial("udp", s.UDPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "default/getip-1 " + c.LocalAddr().String() + " ping"; string(buf[:n]) != want {
		t.Fatalf("udp reply %q, want %q", buf[:n], want)
	}
	if s.Stats().UDP != 1 {
		t.Errorf("UDP counter %d", s.Stats().UDP)
	}
}

// Stop refuses new connections, closes open ones (idle HTTP keep-alive and
// echo alike) and leaves no goroutine behind.
func TestStopNoLeaks(t *testing.T) {
	base := runtime.NumGoroutine()
	s, err := Start(Config{Name: "p", IP: netip.MustParseAddr("10.0.0.1"), MAC: testMAC,
		Ports: []Port{{Port: 0}, {Port: 0, Protocol: "UDP"}}, Bind: netip.MustParseAddr("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.TCPAddrs()[0].String()

	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/name")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()

	echo, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	_, _ = io.WriteString(echo, "x\n")
	_ = echo.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(echo).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", addr) // never sends: stuck in classify
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond) // let the server accept it

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Stop: %v, want connection refused", err)
	}
	if n, err := echo.Read(make([]byte, 10)); err == nil {
		t.Fatalf("echo connection still open after Stop (read %d bytes)", n)
	}
	tr.CloseIdleConnections()
	echo.Close()
	silent.Close()
	waitGoroutines(t, base)
}

func TestStartFailureClosesEverything(t *testing.T) {
	s := start(t, Port{Port: 0})
	_, port, _ := net.SplitHostPort(s.TCPAddrs()[0].String())
	var p int32
	for _, ch := range port {
		p = p*10 + int32(ch-'0')
	}
	// First a free UDP port, then the TCP port already taken.
	_, err := Start(Config{Name: "q", Ports: []Port{{Port: 0, Protocol: "UDP"}, {Port: p}}, Bind: netip.MustParseAddr("127.0.0.1")}, nil)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Start on a taken port: %v", err)
	}
	if _, err := Start(Config{Name: "q", Ports: []Port{{Port: 1, Protocol: "SCTP"}}}, nil); err == nil {
		t.Fatal("SCTP accepted")
	}
}
