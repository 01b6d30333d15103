package nginxconf

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzRender feeds hostile hosts, paths and rewrite targets to the
// renderer. Whatever Validate accepts must render to text that parses back
// to exactly the directives it was rendered from (no injected directive,
// no escaped block), and the real nginx must accept it (`nginx -t`, in a
// network namespace of its own; skipped where nginx is not installed).
func FuzzRender(f *testing.F) {
	for _, s := range [][4]string{
		{"www.tabops.com", "/", "", ""},
		{"a.example", `/something(/|$)(.*)`, "/$2", "regex"},
		{"a.example;\nssl_engine x", "/", "", ""},
		{"a.example", "/x;} location /y {", "", ""},
		{"a.example", `/a\";load_module /x.so;#`, "", "regex"},
		{"a.example", `/a\`, "", "regex"},
		{"a.example", "/a", "/$1;return 200 x", "regex"},
		{"*.example.com", "/b{2}", "", "regex"},
		{"a.example", "/x y", "", "exact"},
		{"a.example", "/%2e%2e", "", "prefix"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, host, path, rewrite, kind string) {
		k := Plain
		switch kind {
		case "regex":
			k = Regex
		case "exact":
			k = Exact
		case "prefix":
			k = Prefix
		}
		loc := Location{Path: path, Kind: k, Upstream: "ns.svc.80"}
		if k == Regex {
			loc.RewriteTarget = rewrite
		}
		c := &Config{Generation: 1, Prefix: dir, HTTPPort: 80, HTTPSPort: 443, StatusPort: 10246,
			Upstreams: []Upstream{{Name: "ns.svc.80", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.2:80")}}},
			Servers:   []Server{{Host: host, Locations: []Location{loc}}}}
		text, tree, err := Render(c)
		if err != nil {
			return
		}
		if err := Check(text, tree); err != nil {
			t.Fatalf("accepted input changed the configuration's structure: %v\n%s", err, text)
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "load_module") || strings.Contains(l, "ssl_engine") {
				t.Fatalf("a hostile directive reached the text: %q", l)
			}
		}
		if err := nginxTest(t, dir, text); err != nil {
			t.Fatalf("nginx refused an accepted configuration: %v\n%s", err, text)
		}
	})
}
