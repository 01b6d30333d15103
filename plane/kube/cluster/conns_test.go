package cluster

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConnSetClosesWhatIsOpen(t *testing.T) {
	s := newConnSet()
	a1, b1 := net.Pipe()
	a2, b2 := net.Pipe()
	defer b1.Close()
	defer b2.Close()
	c1, c2 := s.add(a1), s.add(a2)
	require.NoError(t, c1.Close())
	assert.Len(t, s.m, 1, "a closed connection is forgotten")
	s.closeAll()
	assert.Empty(t, s.m)
	_, err := c2.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "closeAll closed the open one")
}

func TestCountTCP(t *testing.T) {
	// 198.18.0.2 is 020012C6 in the kernel's words; states 01 ESTABLISHED,
	// 04 FIN_WAIT1, 06 TIME_WAIT.
	v4 := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0D0012C6:A1B2 020012C6:192B 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1
   1: 0D0012C6:A1B3 020012C6:192B 04 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0D0012C6:A1B4 020012C6:192B 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
   3: 0D0012C6:A1B5 030012C6:192B 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
`
	is := func(s string) func(netip.Addr) bool {
		return func(a netip.Addr) bool { return a == netip.MustParseAddr(s) }
	}
	assert.Equal(t, 2, countTCP(v4, is("198.18.0.2")))
	assert.Equal(t, 1, countTCP(v4, is("198.18.0.3")))
	assert.Equal(t, 0, countTCP(v4, is("10.0.0.1")))
	// The API server's side: [::ffff:198.18.0.2]:6443 from [::ffff:198.18.0.13]
	// and from a pod, 10.244.3.5 (0503F40A), ESTABLISHED.
	v6 := `  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF0000020012C6:192B 0000000000000000FFFF00000D0012C6:A1B2 01
   1: 0000000000000000FFFF0000020012C6:192B 0000000000000000FFFF00000503F40A:B000 01
   2: 0000000000000000FFFF0000020012C6:192B 0000000000000000FFFF00000C0012C6:B001 01
`
	node3 := func(a netip.Addr) bool {
		return a == netip.MustParseAddr("198.18.0.13") || netip.MustParsePrefix("10.244.3.0/24").Contains(a)
	}
	assert.Equal(t, 2, countTCP(v6, node3))
}
