package agent_test

import (
	"bytes"
	"context"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/iptrestoretest"
	"github.com/svcsim/svcsim/modes/nftables"
)

// FuzzDecodeState feeds arbitrary bytes to the node-proxy feed's decoder
// (PUT /v1/state). Whatever passes decoding and Validate is synced by the
// iptables and nftables modes on their fakes: the fakes parse every
// restore script and transaction, so a name that smuggled a quote or a
// newline into a rule would fail here. Seeds: testdata/fuzz/FuzzDecodeState.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"node":"node1","generation":1,"nodeIPs":["198.18.0.11"],"podCIDR":"10.244.1.0/24","clusterCIDR":"10.244.0.0/16","serviceCIDR":"10.96.0.0/12","services":[{"namespace":"default","name":"a","portName":"http","protocol":"TCP","clusterIP":"10.96.0.20","port":80,"nodePort":30080,"endpoints":[{"ip":"10.244.1.2","port":8080,"ready":true,"node":"node1"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := agent.DecodeState(bytes.NewReader(data))
		if err != nil {
			return
		}
		ctx := context.Background()
		ipt, err := iptables.New(iptables.Config{Backend: iptrestore.NFT, Runner: iptrestoretest.NewFake(""), Node: "node1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := ipt.Sync(ctx, st); err != nil {
			t.Fatalf("iptables sync of a valid state: %v", err)
		}
		nft := knftables.NewFake(knftables.IPv4Family, "kube-proxy")
		if err := nftables.New(nft, nftables.Config{Node: "node1"}).Sync(ctx, st); err != nil {
			t.Fatalf("nftables sync of a valid state: %v", err)
		}
		if err := knftables.NewFake(knftables.IPv4Family, "kube-proxy").ParseDump(nft.Dump()); err != nil {
			t.Fatalf("nftables dump does not parse back: %v", err)
		}
	})
}
