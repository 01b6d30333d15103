package gateway

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
	"github.com/svcsim/svcsim/addons/ingress/nginxconf/nginxtest"
)

// FuzzRender feeds hostile hostnames, paths, header names and values and
// redirect hosts to the renderer. Whatever Validate accepts must render to
// text that parses back to exactly the directives it was rendered from (no
// injected directive, no escaped block), and the real nginx must accept it
// (`nginx -t` in a network namespace of its own; skipped without nginx).
func FuzzRender(f *testing.F) {
	for _, s := range [][5]string{
		{"a.example", "/", "X-Version", "v1", ""},
		{"*.example.com", "/p/", "X-A", `v"; return 200 x; #`, "b.example"},
		{"a.example;\nssl_engine x", "/", "X", "v", ""},
		{"a.example", "/x;} location /y {", "X", "$host", ""},
		{"a.example", "/a", "X-Set", `a\";load_module /x.so;#`, ""},
		{"a.example", "/a", "X", "v\nserver {", "b.example;"},
		{"a.example", "/a$b", "X", "${svcsim_dollar}", ""},
		{"a.example", "/%2e", "Host", "{}", ""},
		{"a.example", "/%2e/", "Host", "{\x9d", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, host, path, header, value, redirect string) {
		rule := &Rule{Route: "ns/r", Order: 1,
			Matches:    []Match{{Path: path, Kind: PathPrefix, Headers: []HeaderMatch{{Name: header, Value: value}}}},
			SetHeaders: []Header{{Name: header, Value: value}}, AddHeaders: []Header{{Name: header, Value: value}},
			Backends: []Backend{{Service: "ns/s", Weight: 1, Servers: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.2:3000")}}}}
		red := &Rule{Route: "ns/r", Index: 1, Order: 2, Matches: []Match{{Path: path, Kind: PathExact}},
			Redirect: &Redirect{Host: redirect, Code: 302}}
		p := &Plan{Generation: 1, Prefix: dir, StatusPort: StatusPort, Ports: map[int]*Port{
			PodPortBase: {Listener: 80, Certs: map[string]*TLSFiles{}, Servers: map[string]*Server{host: {Rules: []*Rule{rule, red}}}}}}
		text, tree, err := Render(p)
		if err != nil {
			return
		}
		if err := nginxconf.Check(text, tree); err != nil {
			t.Fatalf("accepted input changed the configuration's structure: %v\n%s", err, text)
		}
		parsed, err := nginxconf.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if n := directiveNamed(parsed, "load_module", "ssl_engine"); n != "" {
			t.Fatalf("a hostile directive reached the configuration: %s\n%s", n, text)
		}
		if err := nginxtest.Run(t, dir, text); err != nil {
			t.Fatalf("nginx refused an accepted configuration: %v\n%s", err, text)
		}
	})
}

// directiveNamed returns the first directive in ds (at any depth) with
// one of the names.
func directiveNamed(ds []nginxconf.Directive, names ...string) string {
	for _, d := range ds {
		if slices.Contains(names, d.Name) {
			return d.Name
		}
		if n := directiveNamed(d.Block, names...); n != "" {
			return n
		}
	}
	return ""
}
