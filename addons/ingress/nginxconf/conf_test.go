package nginxconf

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf/nginxtest"
)

// sample is a configuration with every kind of location.
func sample(prefix string) *Config {
	up := netip.MustParseAddrPort("10.244.1.2:80")
	return &Config{
		Generation: 3, Prefix: prefix, HTTPPort: 80, HTTPSPort: 443, StatusPort: 10246,
		Upstreams: []Upstream{{Name: "default.getip-service.80", Servers: []netip.AddrPort{up, netip.MustParseAddrPort("10.244.2.2:80")}}},
		Servers: []Server{
			{Host: "www.tabops.com", Locations: []Location{
				{Path: "/", Kind: Prefix, Upstream: "default.getip-service.80"},
				{Path: "/exact", Kind: Exact, Upstream: "default.getip-service.80"},
				{Path: "/foo", Kind: Prefix},
				{Path: "/plain/", Kind: Plain, Upstream: "default.getip-service.80"},
			}},
			{Host: "www.pdd.com", Locations: []Location{
				{Path: "/a", Kind: Regex, Upstream: "default.getip-service.80"},
				{Path: `/something(/|$)(.*)`, Kind: Regex, RewriteTarget: "/$2", Upstream: "default.getip-service.80"},
			}},
		},
	}
}

// What Render writes parses back to the directives it was rendered from,
// with regular expressions longest first and Prefix paths element-wise.
func TestRenderRoundTrip(t *testing.T) {
	text, tree, err := Render(sample("/run/x"))
	require.NoError(t, err)
	require.NoError(t, Check(text, tree))
	require.Contains(t, text, `location ~* ^/something(/|$)(.*) {`)
	require.Less(t, strings.Index(text, `^/something`), strings.Index(text, `~* ^/a`), "the longer regex comes first")
	require.Contains(t, text, "location = /foo {")
	require.Contains(t, text, "location /foo/ {")
	require.Contains(t, text, `rewrite (?i)^/something(/|$)(.*) /$2 break;`)
}

// Hostile values are refused by Validate with a message naming them, and
// quoting keeps any string one argument.
func TestHostileInputRefused(t *testing.T) {
	for _, tc := range []struct {
		mut  func(c *Config)
		want string
	}{
		{func(c *Config) { c.Servers[0].Host = "a.com;\nssl_engine /tmp/x.so" }, "is not a lower-case DNS name"},
		{func(c *Config) { c.Servers[0].Locations[0].Path = "/x { } location /y" }, "may hold only"},
		{func(c *Config) { c.Servers[1].Locations[0].Path = `/a" ; load_module /x.so; "` }, "may hold only"},
		{func(c *Config) { c.Servers[1].Locations[0].Path = `/a\` }, "ends in an escape"},
		{func(c *Config) { c.Servers[1].Locations[1].RewriteTarget = "/$2; return 200 x" }, "rewrite-target"},
		{func(c *Config) { c.Servers[1].Locations[1].RewriteTarget = "/$request_body" }, "rewrite-target"},
		{func(c *Config) { c.Servers[1].Locations[0].Path = "/a(" }, "is not a regular expression"},
	} {
		c := sample("/run/x")
		tc.mut(c)
		_, _, err := Render(c)
		require.ErrorContains(t, err, tc.want)
	}
	for _, s := range []string{`a"b`, `a\`, `\"`, "x;}\n{", "", `\\\"`, "{\x9d\xff"} {
		toks, err := lex("x " + Quote(s) + ";")
		require.NoError(t, err)
		require.Len(t, toks, 3, "%q", s)
		require.Equal(t, s, toks[1].s)
	}
}

// nginxTest runs the real nginx -t on text (package nginxtest).
func nginxTest(t testing.TB, dir, text string) error { return nginxtest.Run(t, dir, text) }

// The rendered configuration passes the real nginx's check.
func TestNginxAcceptsRendered(t *testing.T) {
	dir := t.TempDir()
	text, _, err := Render(sample(dir))
	require.NoError(t, err)
	require.NoError(t, nginxTest(t, dir, text))
}
