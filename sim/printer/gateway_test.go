package printer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/sim"
)

// The Gateway API kinds print the CRDs' printer columns.
func TestGatewayTables(t *testing.T) {
	cfg := sim.DefaultConfig(1)
	cfg.Clock = func() time.Time { return t0 }
	c, err := sim.New(cfg)
	require.NoError(t, err)
	objs, err := sim.Decode([]byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: svcsim}
spec: {controllerName: svcsim.dev/gateway-nginx}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: svcsim
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  hostnames: [a.example, b.example]
`), "gw.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	now := t0.Add(5 * time.Minute)
	require.Equal(t, "NAME     CONTROLLER                 ACCEPTED   AGE\nsvcsim   svcsim.dev/gateway-nginx              5m\n",
		get(t, c, Request{Kind: "gatewayclass", Now: now}))
	require.Equal(t, "NAME   CLASS    ADDRESS   PROGRAMMED   AGE\ngw     svcsim                          5m\n",
		get(t, c, Request{Kind: "gateways", Now: now}))
	require.Equal(t, "NAME   HOSTNAMES                   AGE\nr      [\"a.example\",\"b.example\"]   5m\n",
		get(t, c, Request{Kind: "httproute", Now: now}))
}
