package tracer

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// FuzzTrace parses arbitrary iptables-save text and traces a ClusterIP, a
// NodePort and a local packet through whatever parses: the rule-argument
// parser and the walk must neither panic nor run away (a watchdog turns a
// runaway into a crash the fuzzer keeps). Seeds: testdata/fuzz/FuzzTrace.
func FuzzTrace(f *testing.F) {
	f.Add([]byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.2:8080\nCOMMIT\n"))
	node := Node{LocalAddrs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}}
	packets := []Packet{
		{Src: netip.MustParseAddr("10.244.1.2"), Dst: netip.MustParseAddr("10.96.0.20"), Proto: "tcp", DPort: 80},
		{Src: netip.MustParseAddr("198.18.0.100"), Dst: netip.MustParseAddr("198.18.0.11"), Proto: "udp", DPort: 30080},
		{Src: netip.MustParseAddr("198.18.0.11"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: "tcp", DPort: 53, Local: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("trace ran over 10s on %q", data)) })
		defer watchdog.Stop()
		rs, err := ruleset.Parse(data)
		if err != nil {
			return
		}
		for _, p := range packets {
			_, _ = Trace(rs, node, p)
		}
	})
}

// TestTraceBoundsForks: 26 statistic rules jumping to an empty chain make
// 2^26 paths; the trace gives up with an error in bounded time instead.
func TestTraceBoundsForks(t *testing.T) {
	text := "*nat\n:PREROUTING ACCEPT [0:0]\n:R - [0:0]\n"
	for range 26 {
		text += "-A PREROUTING -m statistic --mode random --probability 0.5 -j R\n"
	}
	rs, err := ruleset.Parse([]byte(text + "COMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Trace(rs, Node{}, Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.96.0.1"), Proto: "tcp", DPort: 80})
	if err == nil {
		t.Fatal("a 2^26-path trace succeeded; want the step bound's error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("bounded trace took %v", d)
	}
	t.Logf("refused after %v: %v", time.Since(start), err)
}
