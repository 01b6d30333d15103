package iptrestore

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestBackendOf(t *testing.T) {
	for in, want := range map[string]Backend{
		"iptables v1.8.9 (nf_tables)\n": NFT,
		"iptables v1.8.9 (legacy)":      Legacy,
		"iptables v1.6.1":               Legacy,
	} {
		got, err := BackendOf(in)
		if err != nil || got != want {
			t.Errorf("BackendOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := BackendOf("nft v1.0.6"); err == nil {
		t.Errorf("BackendOf(nft) did not fail")
	}
}

func TestRestoreErrorQuotesFailedLine(t *testing.T) {
	in := []byte("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j NOPE\n-A KUBE-A -j RETURN\nCOMMIT\n")
	err := error(&RestoreError{Cmd: "iptables-restore -w", Err: errors.New("exit status 2"), Stderr: "iptables-restore: line 3 failed", Input: in})
	msg := err.Error()
	for _, want := range []string{"=>     3: -A KUBE-A -j NOPE", "      2: :KUBE-A - [0:0]", "      4: -A KUBE-A -j RETURN"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if !IsRestoreError(err) {
		t.Errorf("IsRestoreError = false")
	}
}

func TestNodeBackend(t *testing.T) {
	for _, b := range []Backend{Legacy, NFT} {
		if got, err := NodeBackend(context.Background(), string(b)); err != nil || got != b {
			t.Errorf("NodeBackend(%q) = %q, %v", b, got, err)
		}
	}
	if _, err := NodeBackend(context.Background(), "xt"); err == nil {
		t.Errorf("NodeBackend(xt) did not fail")
	}
}
