// Package nginxconf renders the ingress controller's nginx.conf from a
// model of servers, locations and upstreams, and checks what it renders.
//
// Everything that comes from an Ingress (a host, a path, an annotation's
// value, a Secret) reaches the text only after Validate has accepted it,
// and then only as a double-quoted nginx string (Quote), so no input can
// end a string, a directive or a block: the IngressNightmare family of
// ingress-nginx vulnerabilities (CVE-2025-1974, CVE-2025-1097/1098/24514,
// and CVE-2021-25742/25745/25746 before them) injected directives through
// annotation values and paths that the template pasted in unquoted.
// Certificates are written to files by the caller and named by their
// digest, never by anything a user wrote. Parse reads nginx's own token
// rules back, so tests (and the controller, before `nginx -t`) can check
// that the rendered text has exactly the directives the model asked for.
package nginxconf

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// PathKind is how a location matches.
type PathKind int

const (
	// Prefix matches the path element-wise (Kubernetes' Prefix: /foo
	// matches /foo and /foo/bar, not /foobar).
	Prefix PathKind = iota
	// Exact matches the path only.
	Exact
	// Plain is nginx's own prefix match (ingress-nginx's
	// ImplementationSpecific without regex: /foo matches /foobar; a path
	// ending in / answers the path without it with a 301 to it).
	Plain
	// Regex is a case-insensitive regular expression anchored at the start
	// (use-regex, rewrite-target).
	Regex
)

func (k PathKind) String() string {
	return [...]string{"Prefix", "Exact", "Plain", "Regex"}[k]
}

// Config is one whole nginx.conf.
type Config struct {
	// Generation numbers the configuration; the status server answers it
	// on /svcsim/generation, so a reload can be seen to have taken.
	Generation uint64
	// Prefix is nginx's prefix directory (-p): temp paths live under it.
	Prefix string
	// HTTPPort and HTTPSPort are where the servers listen (80, 443).
	HTTPPort, HTTPSPort int
	// StatusPort is the status server's port on 127.0.0.1 (/healthz,
	// /svcsim/generation), ingress-nginx's 10246.
	StatusPort int
	// Servers are the virtual hosts, one per host name.
	Servers []Server
	// DefaultLocations are served by the default server, for requests
	// whose host no server has (rules without a host, defaultBackend);
	// any other path there answers 404.
	DefaultLocations []Location
	// Upstreams are the backends locations proxy to.
	Upstreams []Upstream
}

// Server is one virtual host.
type Server struct {
	// Host is the server_name: a DNS name, or *.domain.
	Host string
	// TLS, when set, serves the host on HTTPSPort too with these files.
	TLS *TLSFiles
	// SSLRedirect sends plain HTTP requests to https with 308 (only with
	// TLS).
	SSLRedirect bool
	// Locations in any order: Render orders them as nginx must see them.
	Locations []Location
}

// TLSFiles name a certificate and key file under Prefix.
type TLSFiles struct {
	Cert, Key string
}

// Location is one path of a server.
type Location struct {
	Path string
	Kind PathKind
	// Upstream names the upstream to proxy to; "" answers 503 (a backend
	// Service without endpoints).
	Upstream string
	// RewriteTarget, when set, rewrites the URI matched by Path (Regex
	// only) before proxying: "/$2".
	RewriteTarget string
	// Source names the Ingress it came from ("namespace/name"), for
	// messages; it is not rendered.
	Source string
}

// Upstream is a set of backend addresses.
type Upstream struct {
	Name    string
	Servers []netip.AddrPort
}

// Limits of what Validate accepts.
const (
	MaxHostLen = 253
	MaxPathLen = 2048
)

var (
	hostRE = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// plainPathRE is what a non-regex path may hold: RFC 3986's
	// unreserved characters, "/", and percent escapes' "%".
	plainPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~/%\-]*$`)
	// regexPathRE adds the regular-expression operators; quotes,
	// whitespace, control characters, ";" and "#" are never allowed.
	regexPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~/%\-()\[\]{}|^$*+?\\:,=!@&]*$`)
	// rewriteRE: a path with $1..$9 captures.
	rewriteRE = regexp.MustCompile(`^/[A-Za-z0-9._~/%\-]*(\$[1-9][A-Za-z0-9._~/%\-]*)*$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	fileRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
)

// ValidateHost checks a server name.
func ValidateHost(h string) error {
	if len(h) > MaxHostLen || !hostRE.MatchString(h) {
		return fmt.Errorf("host %q is not a lower-case DNS name (or *.name)", h)
	}
	return nil
}

// ValidatePath checks a location's path for its kind.
func ValidatePath(p string, k PathKind) error {
	if len(p) > MaxPathLen {
		return fmt.Errorf("path of %d bytes: at most %d", len(p), MaxPathLen)
	}
	switch k {
	case Regex:
		if !regexPathRE.MatchString(p) {
			return fmt.Errorf("regular-expression path %q may hold only letters, digits, %q and regular-expression operators (no quotes, spaces, ';' or '#')", p, "._~/%-")
		}
		if strings.HasSuffix(p, `\`) && !strings.HasSuffix(p, `\\`) {
			return fmt.Errorf("regular-expression path %q ends in an escape", p)
		}
		if _, err := regexp.Compile("(?i)^" + p); err != nil {
			return fmt.Errorf("path %q is not a regular expression: %w", p, err)
		}
	default:
		if !plainPathRE.MatchString(p) {
			return fmt.Errorf("path %q may hold only letters, digits and %q (use-regex for regular expressions)", p, "/._~%-")
		}
	}
	return nil
}

// ValidateRewriteTarget checks a rewrite-target annotation's value.
func ValidateRewriteTarget(t string) error {
	if len(t) > MaxPathLen || !rewriteRE.MatchString(t) {
		return fmt.Errorf("rewrite-target %q must be a path of letters, digits and %q with $1..$9 captures", t, "/._~%-")
	}
	return nil
}

// Validate checks the whole model: what Render writes is then exactly it.
func (c *Config) Validate() error {
	if !strings.HasPrefix(c.Prefix, "/") || !fileRE.MatchString(strings.TrimPrefix(c.Prefix, "/")) {
		return fmt.Errorf("prefix %q is not an absolute path of plain characters", c.Prefix)
	}
	for _, p := range []int{c.HTTPPort, c.HTTPSPort, c.StatusPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("port %d out of range", p)
		}
	}
	ups := map[string]bool{}
	for _, u := range c.Upstreams {
		if !nameRE.MatchString(u.Name) || ups[u.Name] {
			return fmt.Errorf("upstream name %q invalid or repeated", u.Name)
		}
		ups[u.Name] = true
		if len(u.Servers) == 0 {
			return fmt.Errorf("upstream %s has no servers", u.Name)
		}
		for _, s := range u.Servers {
			if !s.IsValid() || s.Port() == 0 {
				return fmt.Errorf("upstream %s: invalid server %v", u.Name, s)
			}
		}
	}
	if err := validateLocations("the default server", c.DefaultLocations, ups); err != nil {
		return err
	}
	hosts := map[string]bool{}
	for _, s := range c.Servers {
		if err := ValidateHost(s.Host); err != nil {
			return err
		}
		if hosts[s.Host] {
			return fmt.Errorf("host %s repeated", s.Host)
		}
		hosts[s.Host] = true
		if s.TLS != nil {
			for _, f := range []string{s.TLS.Cert, s.TLS.Key} {
				if !fileRE.MatchString(f) || strings.Contains(f, "..") {
					return fmt.Errorf("host %s: certificate file %q is not a plain relative path", s.Host, f)
				}
			}
		}
		if err := validateLocations("host "+s.Host, s.Locations, ups); err != nil {
			return err
		}
	}
	return nil
}

// LocationKeys are the nginx locations l becomes ("= /foo", "/foo/",
// "~* ^/foo"): two locations of a server may not share one.
func LocationKeys(l Location) []string {
	switch l.Kind {
	case Exact:
		return []string{"= " + l.Path}
	case Regex:
		return []string{"~* ^" + l.Path}
	case Prefix:
		base := strings.TrimSuffix(l.Path, "/")
		if base == "" {
			return []string{"/"}
		}
		return []string{"= " + base, base + "/"}
	}
	return []string{l.Path}
}

// Quote returns s as a double-quoted nginx string: nginx's lexer takes a
// backslash as escaping the next character, so backslashes and quotes are
// escaped and nothing in s can end the string. It works byte by byte, so
// bytes that are not UTF-8 pass through as they are (nginx reads bytes).
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '"':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Render validates c and returns its nginx.conf and the directives it
// holds (what Parse must read back from it). Paths of nginx's own (temp
// files, logs) are under c.Prefix; nothing is written outside it.
func Render(c *Config) (string, []Directive, error) {
	if err := c.Validate(); err != nil {
		return "", nil, fmt.Errorf("render nginx.conf: %w", err)
	}
	p := func(name string) string { return c.Prefix + "/" + name }
	d := func(name string, args ...string) Directive { return Directive{Name: name, Args: args} }
	b := func(name string, args []string, body ...Directive) Directive {
		if body == nil {
			body = []Directive{}
		}
		return Directive{Name: name, Args: args, Block: body}
	}
	itoa := func(i int) string { return fmt.Sprint(i) }
	http := []Directive{
		d("client_body_temp_path", p("tmp/body")), d("proxy_temp_path", p("tmp/proxy")), d("fastcgi_temp_path", p("tmp/fastcgi")),
		d("uwsgi_temp_path", p("tmp/uwsgi")), d("scgi_temp_path", p("tmp/scgi")),
		d("access_log", "off"), d("server_tokens", "off"), d("server_names_hash_bucket_size", "128"),
		d("proxy_http_version", "1.1"), d("proxy_set_header", "Host", "$host"), d("proxy_set_header", "Connection", ""),
		d("proxy_set_header", "X-Forwarded-For", "$remote_addr"), d("proxy_connect_timeout", "5s"),
		d("proxy_next_upstream", "error", "timeout"),
	}
	for _, u := range sortedUpstreams(c.Upstreams) {
		var body []Directive
		for _, s := range u.Servers {
			body = append(body, d("server", s.String(), "max_fails=0"))
		}
		http = append(http, b("upstream", []string{u.Name}, append(body, d("keepalive", "16"))...))
	}
	// The default server: unknown hosts and paths get 404, as
	// ingress-nginx's default backend answers.
	def := server(c, Server{Host: "_", Locations: c.DefaultLocations}, p)
	def.Block = append([]Directive{
		d("listen", itoa(c.HTTPPort), "default_server"),
		d("listen", itoa(c.HTTPSPort), "ssl", "default_server"),
		d("ssl_reject_handshake", "on"),
	}, def.Block[1:]...)
	http = append(http, def)
	servers := append([]Server(nil), c.Servers...)
	sort.Slice(servers, func(i, j int) bool { return servers[i].Host < servers[j].Host })
	for _, s := range servers {
		http = append(http, server(c, s, p))
	}
	http = append(http, b("server", nil,
		d("listen", fmt.Sprintf("127.0.0.1:%d", c.StatusPort)),
		d("server_name", "svcsim-status"),
		b("location", []string{"=", "/healthz"}, d("return", "200", "ok")),
		b("location", []string{"=", "/svcsim/generation"}, d("return", "200", fmt.Sprint(c.Generation)))))
	tree := []Directive{
		d("worker_processes", "1"),
		d("worker_shutdown_timeout", "10s"),
		d("lock_file", p("nginx.lock")),
		b("events", nil, d("worker_connections", "1024")),
		b("http", nil, http...),
	}
	return fmt.Sprintf("# generated by svcsim's ingress controller, generation %d\n", c.Generation) + Format(tree), tree, nil
}

func sortedUpstreams(us []Upstream) []Upstream {
	out := append([]Upstream(nil), us...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func server(c *Config, s Server, p func(string) string) Directive {
	body := []Directive{{Name: "listen", Args: []string{fmt.Sprint(c.HTTPPort)}}}
	if s.TLS != nil {
		body = append(body,
			Directive{Name: "listen", Args: []string{fmt.Sprint(c.HTTPSPort), "ssl"}},
			Directive{Name: "ssl_certificate", Args: []string{p(s.TLS.Cert)}},
			Directive{Name: "ssl_certificate_key", Args: []string{p(s.TLS.Key)}})
	}
	body = append(body, Directive{Name: "server_name", Args: []string{s.Host}})
	if s.TLS != nil && s.SSLRedirect {
		body = append(body, Directive{Name: "if", Args: []string{"($scheme", "=", "http)"},
			Block: []Directive{{Name: "return", Args: []string{"308", "https://$host$request_uri"}}}})
	}
	loc := func(args []string, l Location) Directive {
		var in []Directive
		if l.RewriteTarget != "" {
			in = append(in, Directive{Name: "rewrite", Args: []string{"(?i)^" + l.Path, l.RewriteTarget, "break"}})
		}
		if l.Upstream == "" {
			in = append(in, Directive{Name: "return", Args: []string{"503"}})
		} else {
			in = append(in, Directive{Name: "proxy_pass", Args: []string{"http://" + l.Upstream}})
		}
		return Directive{Name: "location", Args: args, Block: in}
	}
	for _, l := range OrderLocations(s.Locations) {
		for _, k := range LocationKeys(l) {
			args := strings.SplitN(k, " ", 2)
			body = append(body, loc(args, l))
		}
	}
	if !hasRoot(s.Locations) {
		body = append(body, Directive{Name: "location", Args: []string{"/"}, Block: []Directive{{Name: "return", Args: []string{"404"}}}})
	}
	return Directive{Name: "server", Block: body}
}

// hasRoot reports whether some location already catches every path.
func hasRoot(ls []Location) bool {
	for _, l := range ls {
		if (l.Kind == Prefix || l.Kind == Plain) && l.Path == "/" {
			return true
		}
	}
	return false
}

// OrderLocations returns ls in the order Render writes them: regular
// expressions by length, longest first (nginx takes the first regex that
// matches, so the most specific must come first, as ingress-nginx orders
// them), the others by kind and path (nginx picks the longest prefix
// itself).
func OrderLocations(ls []Location) []Location {
	out := append([]Location(nil), ls...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Kind == Regex) != (b.Kind == Regex) {
			return a.Kind != Regex
		}
		if a.Kind == Regex {
			if len(a.Path) != len(b.Path) {
				return len(a.Path) > len(b.Path)
			}
			return a.Path < b.Path
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Path < b.Path
	})
	return out
}

func validateLocations(where string, ls []Location, ups map[string]bool) error {
	seen := map[string]bool{}
	for _, l := range ls {
		if err := ValidatePath(l.Path, l.Kind); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, k := range LocationKeys(l) {
			if seen[k] {
				return fmt.Errorf("%s: location %s repeated", where, k)
			}
			seen[k] = true
		}
		if l.Upstream != "" && !ups[l.Upstream] {
			return fmt.Errorf("%s path %s: unknown upstream %q", where, l.Path, l.Upstream)
		}
		if l.RewriteTarget != "" {
			if l.Kind != Regex {
				return fmt.Errorf("%s path %s: rewrite-target needs a regular-expression path", where, l.Path)
			}
			if err := ValidateRewriteTarget(l.RewriteTarget); err != nil {
				return err
			}
		}
	}
	return nil
}
