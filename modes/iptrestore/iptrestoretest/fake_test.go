package iptrestoretest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes/iptrestore"
)

func TestFakeNoflushSemantics(t *testing.T) {
	ctx := context.Background()
	f := NewFake("")
	require.NoError(t, f.Restore(ctx, []byte("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\n-A KUBE-B -j MASQUERADE\n-I POSTROUTING -j KUBE-A\nCOMMIT\n"), true, false))
	// Declaring an existing chain flushes it; others stay.
	require.NoError(t, f.Restore(ctx, []byte("*nat\n:KUBE-B - [0:0]\n-A KUBE-B -j RETURN\nCOMMIT\n"), true, false))
	s, err := f.Save(ctx, "nat")
	require.NoError(t, err)
	assert.Equal(t, `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-A - [0:0]
:KUBE-B - [0:0]
-A POSTROUTING -j KUBE-A
-A KUBE-A -j KUBE-B
-A KUBE-B -j RETURN
COMMIT
`, string(s))

	for name, bad := range map[string]string{
		"jump to missing chain":  "*nat\n-A POSTROUTING -j KUBE-C\nCOMMIT\n",
		"delete missing rule":    "*nat\n-D POSTROUTING -j KUBE-B\nCOMMIT\n",
		"delete referenced":      "*nat\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n",
		"delete non-empty chain": "*nat\n-X KUBE-A\nCOMMIT\n",
		"no commit":              "*nat\n-A POSTROUTING -j RETURN\n",
	} {
		assert.Error(t, f.Restore(ctx, []byte(bad), true, false), name)
	}
	s2, _ := f.Save(ctx, "nat")
	assert.Equal(t, string(s), string(s2), "failed blocks change nothing")

	require.NoError(t, f.Restore(ctx, []byte("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-D POSTROUTING -j KUBE-A\n-X KUBE-A\n-X KUBE-B\nCOMMIT\n"), true, false))
	s, _ = f.Save(ctx, "nat")
	assert.NotContains(t, string(s), "KUBE-")
}

func TestFakeRestoreErrorQuotesInput(t *testing.T) {
	f := NewFake("")
	err := f.Restore(context.Background(), []byte("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j KUBE-NOPE\nCOMMIT\n"), true, false)
	require.Error(t, err)
	assert.True(t, iptrestore.IsRestoreError(err), "%v", err)
	assert.Contains(t, err.Error(), "=>     3: -A KUBE-A -j KUBE-NOPE")
}
