package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDatapathsByPlane: --plane kubernetes lists kube-proxy's datapaths and
// svcsim's own fed from the API server ("nftables@kubernetes"); --plane
// embedded lists neither.
func TestDatapathsByPlane(t *testing.T) {
	list := func(args ...string) string {
		cmd := newDatapaths()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("datapaths %v: %v", args, err)
		}
		return out.String()
	}
	kube := list("--plane", "kubernetes")
	for _, want := range []string{"kube-proxy/nftables", "nftables@kubernetes", "iptables/legacy@kubernetes", "userspace@kubernetes"} {
		if !strings.Contains(kube, want+" ") {
			t.Errorf("--plane kubernetes lacks %s:\n%s", want, kube)
		}
	}
	if strings.Contains(kube, "\nnftables ") || strings.Contains(kube, "iptables@") {
		t.Errorf("--plane kubernetes lists an embedded datapath or an alias:\n%s", kube)
	}
	emb := list("--plane", "embedded")
	if strings.Contains(emb, "@") || strings.Contains(emb, "kube-proxy/") || !strings.Contains(emb, "\nnftables ") {
		t.Errorf("--plane embedded:\n%s", emb)
	}
}
