package healthcheck

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/sim/state"
)

// memListener is a listener nothing connects to: the tests call the
// handlers directly, and no socket is opened anywhere.
type memListener struct {
	once sync.Once
	done chan struct{}
}

func (l *memListener) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *memListener) Close() error              { l.once.Do(func() { close(l.done) }); return nil }
func (l *memListener) Addr() net.Addr            { return &net.TCPAddr{} }

type fakeNet struct {
	mu     sync.Mutex
	opened []string
	fail   map[string]bool
}

func (f *fakeNet) listen(_, addr string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[addr] {
		return nil, errors.New("address already in use")
	}
	f.opened = append(f.opened, addr)
	return &memListener{done: make(chan struct{})}, nil
}

func lbState(node string, eps ...state.Endpoint) *state.NodeState {
	return &state.NodeState{Node: node, Services: []state.ServicePort{{
		Namespace: "default", Name: "web", Protocol: state.TCP, Port: 80, NodePort: 30080,
		HealthCheckNodePort: 31000, ExternalTrafficPolicy: state.PolicyLocal, Endpoints: eps,
	}}}
}

func get(h http.Handler) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return rec
}

func TestServiceHealth(t *testing.T) {
	f := &fakeNet{}
	s, err := New(Config{Listen: f.listen, Now: func() time.Time { return time.Unix(100, 0) }})
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, []string{":10256"}, f.opened)
	assert.Equal(t, http.StatusServiceUnavailable, get(http.HandlerFunc(s.serveProxy)).Code, "unhealthy before the first sync")

	local := state.Endpoint{IP: netip.MustParseAddr("10.244.1.2"), Port: 80, Node: "node1", Ready: true, Serving: true}
	require.NoError(t, s.Synced(lbState("node1", local), nil))
	assert.Equal(t, []int32{31000}, s.Ports())
	rec := get(s.services[31000].handler(s))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "1", rec.Header().Get(WeightHeader))
	var body ServiceHealth
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "web", body.Service.Name)
	assert.Equal(t, 1, body.LocalEndpoints)
	assert.True(t, body.ServiceProxyHealthy)
	prox := get(http.HandlerFunc(s.serveProxy))
	assert.Equal(t, http.StatusOK, prox.Code)
	assert.Contains(t, prox.Body.String(), `"nodeEligible":true`)

	// Only the endpoint on another node: 503 with a weight of 0.
	remote := local
	remote.Node = "node2"
	require.NoError(t, s.Synced(lbState("node1", remote), nil))
	rec = get(s.services[31000].handler(s))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "0", rec.Header().Get(WeightHeader))

	// A failed sync makes every answer 503, and keeps the ports.
	require.NoError(t, s.Synced(lbState("node1", local), nil))
	require.NoError(t, s.Synced(nil, errors.New("restore failed")))
	assert.Equal(t, http.StatusServiceUnavailable, get(s.services[31000].handler(s)).Code)
	assert.Equal(t, http.StatusServiceUnavailable, get(http.HandlerFunc(s.serveProxy)).Code)

	// The Service gone: its port closes.
	require.NoError(t, s.Synced(&state.NodeState{Node: "node1"}, nil))
	assert.Empty(t, s.Ports())
}

func TestListenFailureIsReported(t *testing.T) {
	f := &fakeNet{fail: map[string]bool{":31000": true}}
	s, err := New(Config{Listen: f.listen, ProxyPort: -1})
	require.NoError(t, err)
	defer s.Close()
	err = s.Synced(lbState("node1"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "31000")
	assert.Empty(t, s.Ports())
}
