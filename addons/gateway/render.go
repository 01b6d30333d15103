package gateway

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
)

// Plan is one nginx.conf for every served Gateway: a listening port of
// the pod per Gateway listener port, virtual hosts per hostname on it, and
// the rules of the routes attached there.
type Plan struct {
	// Generation numbers the configuration (the status server answers it
	// on /svcsim/generation, as the ingress controller's does).
	Generation uint64
	// Prefix is nginx's prefix directory: temp paths and certificates are
	// under it.
	Prefix string
	// StatusPort is the status server's port on 127.0.0.1; it also
	// answers 500 for the share of a rule's weight whose backends are
	// invalid.
	StatusPort int
	// Ports are by the pod's port.
	Ports map[int]*Port
}

// Port is one pod port: one listener port of one Gateway.
type Port struct {
	// Listener is the Gateway's port (80), for redirects.
	Listener int32
	TLS      bool
	// Certs are the listeners' certificates by listener hostname ("" for
	// none).
	Certs map[string]*TLSFiles
	// Servers are by hostname; "" takes every other host.
	Servers map[string]*Server
}

// Server is one virtual host.
type Server struct {
	Rules []*Rule
}

// TLSFiles name a certificate and key file under the prefix.
type TLSFiles struct{ Cert, Key string }

// PathKind is how a match takes a path.
type PathKind int

// The path match types (core).
const (
	PathPrefix PathKind = iota
	PathExact
)

// Rule is one HTTPRoute rule: its matches and what it does.
type Rule struct {
	// Route ("namespace/name") and Index name it in messages.
	Route string
	Index int
	// Order is its precedence among equal matches (older routes first,
	// then by name, then by rule) and names its target location.
	Order   int
	Matches []Match
	// SetHeaders, AddHeaders and RemoveHeaders modify the request.
	SetHeaders, AddHeaders []Header
	RemoveHeaders          []string
	// Redirect answers instead of proxying.
	Redirect *Redirect
	// Backends share the requests by weight; Invalid is the weight of the
	// backendRefs that did not resolve (those requests get 500).
	Backends []Backend
	Invalid  int
}

// Match is one match of a rule.
type Match struct {
	Path    string
	Kind    PathKind
	Method  string
	Headers []HeaderMatch
	Query   []HeaderMatch
}

// HeaderMatch is an exact match of a header or query parameter.
type HeaderMatch struct{ Name, Value string }

// Header is a header to set or add.
type Header struct{ Name, Value string }

// Redirect is a RequestRedirect filter (empty fields keep the request's).
type Redirect struct {
	Scheme, Host string
	Port, Code   int
}

// Backend is one Service port's ready endpoints and its weight.
type Backend struct {
	Service string
	Weight  int
	Servers []netip.AddrPort
}

func (p *Plan) port(pp int) *Port {
	if p.Ports == nil {
		p.Ports = map[int]*Port{}
	}
	if p.Ports[pp] == nil {
		p.Ports[pp] = &Port{Certs: map[string]*TLSFiles{}, Servers: map[string]*Server{}}
	}
	return p.Ports[pp]
}

func (p *Plan) addListener(ls *listener) {
	pt := p.port(ls.podPort)
	pt.Listener = ls.l.Port
	h := ""
	if ls.l.Hostname != nil {
		h = string(*ls.l.Hostname)
	}
	if ls.cert != nil {
		pt.TLS = true
		pt.Certs[h] = ls.cert
	}
}

func (p *Plan) addRules(podPort int, host string, rules []*Rule) {
	pt := p.port(podPort)
	if pt.Servers[host] == nil {
		pt.Servers[host] = &Server{}
	}
	pt.Servers[host].Rules = append(pt.Servers[host].Rules, rules...)
}

// Limits and patterns Validate holds every value to before it is
// rendered (the model's validation already refused most; these are what
// nginx needs).
var (
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,256}$`)
	queryNameRE  = regexp.MustCompile(`^[A-Za-z0-9_]{1,256}$`)
	methodRE     = regexp.MustCompile(`^[A-Z]{1,16}$`)
	gwPathRE     = regexp.MustCompile(`^/(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})*$`)
)

// ValidateValue checks a header or query value: at most 4096 bytes of
// UTF-8 (what an API string can hold), no control characters (nginx never
// passes them in a header).
func ValidateValue(v string) error {
	if v == "" || len(v) > 4096 {
		return fmt.Errorf("value of %d bytes: 1 to 4096", len(v))
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("value %q is not UTF-8", v)
	}
	for _, r := range v {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("value %q holds a control character", v)
		}
	}
	return nil
}

// ValidateRule checks what nginx is given of a rule.
func ValidateRule(r *Rule) error {
	for _, m := range r.Matches {
		if len(m.Path) > 1024 || !gwPathRE.MatchString(m.Path) || strings.Contains(m.Path, "//") {
			return fmt.Errorf("path %q is not an absolute path of the Gateway API's characters", m.Path)
		}
		if m.Method != "" && !methodRE.MatchString(m.Method) {
			return fmt.Errorf("method %q", m.Method)
		}
		for _, h := range m.Headers {
			if !headerNameRE.MatchString(h.Name) {
				return fmt.Errorf("header name %q: only letters, digits and '-' can be matched", h.Name)
			}
			if err := ValidateValue(h.Value); err != nil {
				return fmt.Errorf("header %s: %w", h.Name, err)
			}
		}
		for _, q := range m.Query {
			if !queryNameRE.MatchString(q.Name) {
				return fmt.Errorf("query parameter name %q: only letters, digits and '_' can be matched", q.Name)
			}
			if err := ValidateValue(q.Value); err != nil {
				return fmt.Errorf("query parameter %s: %w", q.Name, err)
			}
		}
	}
	for _, h := range append(append([]Header(nil), r.SetHeaders...), r.AddHeaders...) {
		if !headerNameRE.MatchString(h.Name) {
			return fmt.Errorf("header name %q: only letters, digits and '-' can be set", h.Name)
		}
		if err := ValidateValue(h.Value); err != nil {
			return fmt.Errorf("header %s: %w", h.Name, err)
		}
	}
	for _, h := range r.RemoveHeaders {
		if !headerNameRE.MatchString(h) {
			return fmt.Errorf("header name %q: only letters, digits and '-' can be removed", h)
		}
	}
	if rd := r.Redirect; rd != nil {
		if rd.Host != "" {
			if err := nginxconf.ValidateHost(rd.Host); err != nil || strings.HasPrefix(rd.Host, "*") {
				return fmt.Errorf("redirect hostname %q is not a DNS name", rd.Host)
			}
		}
		if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
			return fmt.Errorf("redirect scheme %q", rd.Scheme)
		}
		if rd.Port < 0 || rd.Port > 65535 {
			return fmt.Errorf("redirect port %d", rd.Port)
		}
		switch rd.Code {
		case 301, 302, 303, 307, 308:
		default:
			return fmt.Errorf("redirect status %d", rd.Code)
		}
	}
	for _, b := range r.Backends {
		if b.Weight < 0 || b.Weight > 1000000 {
			return fmt.Errorf("weight %d", b.Weight)
		}
		for _, s := range b.Servers {
			if !s.IsValid() || s.Port() == 0 {
				return fmt.Errorf("backend %s: invalid server %v", b.Service, s)
			}
		}
	}
	if r.Invalid < 0 || r.Order < 0 {
		return fmt.Errorf("rule %s/%d: negative weight or order", r.Route, r.Index)
	}
	return nil
}

// Validate checks the whole plan.
func (p *Plan) Validate() error {
	if !strings.HasPrefix(p.Prefix, "/") || !regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`).MatchString(p.Prefix) || strings.Contains(p.Prefix, "..") {
		return fmt.Errorf("prefix %q is not an absolute path of plain characters", p.Prefix)
	}
	if p.StatusPort < 1 || p.StatusPort > 65535 {
		return fmt.Errorf("status port %d", p.StatusPort)
	}
	fileRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	orders := map[int]*Rule{}
	for pp, pt := range p.Ports {
		if pp < 1 || pp > 65535 || pp == p.StatusPort || pt.Listener < 1 || pt.Listener > 65535 {
			return fmt.Errorf("port %d (listener %d) out of range", pp, pt.Listener)
		}
		for h, c := range pt.Certs {
			if h != "" {
				if err := nginxconf.ValidateHost(h); err != nil {
					return err
				}
			}
			for _, f := range []string{c.Cert, c.Key} {
				if !fileRE.MatchString(f) || strings.Contains(f, "..") {
					return fmt.Errorf("certificate file %q is not a plain relative path", f)
				}
			}
		}
		for h, s := range pt.Servers {
			if h != "" {
				if err := nginxconf.ValidateHost(h); err != nil {
					return err
				}
			}
			for _, r := range s.Rules {
				if err := ValidateRule(r); err != nil {
					return fmt.Errorf("route %s rule %d: %w", r.Route, r.Index, err)
				}
				if o, ok := orders[r.Order]; ok && o != r {
					return fmt.Errorf("rules %s/%d and %s/%d share order %d", o.Route, o.Index, r.Route, r.Index, r.Order)
				}
				orders[r.Order] = r
			}
		}
	}
	return nil
}

// Render validates p and returns its nginx.conf and the directives it
// holds (what nginxconf.Check must read back). Values reach the text only
// as nginxconf's quoted strings; a literal "$" in a header value is
// written as ${svcsim_dollar}, a variable holding "$", since nginx
// expands variables in those values.
func Render(p *Plan) (string, []nginxconf.Directive, error) {
	if err := p.Validate(); err != nil {
		return "", nil, fmt.Errorf("render gateway nginx.conf: %w", err)
	}
	path := func(name string) string { return p.Prefix + "/" + name }
	http := []nginxconf.Directive{
		d("client_body_temp_path", path("tmp/body")), d("proxy_temp_path", path("tmp/proxy")), d("fastcgi_temp_path", path("tmp/fastcgi")),
		d("uwsgi_temp_path", path("tmp/uwsgi")), d("scgi_temp_path", path("tmp/scgi")),
		d("access_log", "off"), d("server_tokens", "off"), d("server_names_hash_bucket_size", "256"),
		d("proxy_http_version", "1.1"), d("proxy_connect_timeout", "5s"), d("proxy_next_upstream", "error", "timeout"),
		b("geo", []string{"$svcsim_dollar"}, d("default", "$")),
	}
	// Every rule once, in order.
	rules := map[int]*Rule{}
	for _, pt := range p.Ports {
		for _, s := range pt.Servers {
			for _, r := range s.Rules {
				rules[r.Order] = r
			}
		}
	}
	var orders []int
	for o := range rules {
		orders = append(orders, o)
	}
	sort.Ints(orders)
	for _, o := range orders {
		r := rules[o]
		for i, h := range r.AddHeaders {
			v := "$http_" + varName(h.Name)
			http = append(http, b("map", []string{v, fmt.Sprintf("$svcsim_add_%d_%d", o, i)},
				d("", literal(h.Value)), d("default", v+","+literal(h.Value))))
		}
		if ups := upstreamServers(r, p.StatusPort); len(ups) > 0 {
			var body []nginxconf.Directive
			for _, s := range ups {
				body = append(body, d("server", s.addr, fmt.Sprintf("weight=%d", s.weight), "max_fails=0"))
			}
			http = append(http, b("upstream", []string{fmt.Sprintf("svcsim_r%d", o)}, append(body, d("keepalive", "16"))...))
		}
	}
	var ports []int
	for pp := range p.Ports {
		ports = append(ports, pp)
	}
	sort.Ints(ports)
	for _, pp := range ports {
		pt := p.Ports[pp]
		var hosts []string
		for h := range pt.Servers {
			if h != "" {
				hosts = append(hosts, h)
			}
		}
		sort.Strings(hosts)
		http = append(http, server(p, pp, pt, "", true))
		for _, h := range hosts {
			http = append(http, server(p, pp, pt, h, false))
		}
	}
	http = append(http, b("server", nil,
		d("listen", fmt.Sprintf("127.0.0.1:%d", p.StatusPort)),
		d("server_name", "svcsim-status"),
		b("location", []string{"=", "/healthz"}, d("return", "200", "ok")),
		b("location", []string{"=", "/svcsim/generation"}, d("return", "200", fmt.Sprint(p.Generation))),
		b("location", []string{"/"}, d("return", "500"))))
	tree := []nginxconf.Directive{
		d("worker_processes", "1"),
		d("worker_shutdown_timeout", "10s"),
		d("lock_file", path("nginx.lock")),
		b("events", nil, d("worker_connections", "1024")),
		b("http", nil, http...),
	}
	return fmt.Sprintf("# generated by svcsim's gateway controller, generation %d\n", p.Generation) + nginxconf.Format(tree), tree, nil
}

func d(name string, args ...string) nginxconf.Directive {
	return nginxconf.Directive{Name: name, Args: args}
}

func b(name string, args []string, body ...nginxconf.Directive) nginxconf.Directive {
	if body == nil {
		body = []nginxconf.Directive{}
	}
	return nginxconf.Directive{Name: name, Args: args, Block: body}
}

// varName is nginx's variable suffix for a header: lower case, "-" as "_".
func varName(h string) string { return strings.ReplaceAll(strings.ToLower(h), "-", "_") }

// literal makes v a literal in a value nginx expands variables in.
func literal(v string) string { return strings.ReplaceAll(v, "$", "${svcsim_dollar}") }

// quoteMeta escapes every character of s but letters and digits for PCRE
// (a backslash before any other character matches it literally).
func quoteMeta(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80 {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('\\')
		sb.WriteByte(c)
	}
	return sb.String()
}

type upServer struct {
	addr   string
	weight int
}

// upstreamServers spreads a rule's weight over its backends' endpoints:
// each backend gets its weight's share whatever its number of endpoints;
// the invalid backends' share goes to the status server, which answers
// 500.
func upstreamServers(r *Rule, statusPort int) []upServer {
	lcm := 1
	for _, be := range r.Backends {
		if be.Weight > 0 && len(be.Servers) > 0 {
			n := len(be.Servers)
			lcm = lcm / gcd(lcm, n) * n
			if lcm > 720720 {
				lcm = 720720
			}
		}
	}
	var out []upServer
	total := 0
	for _, be := range r.Backends {
		if be.Weight <= 0 || len(be.Servers) == 0 {
			continue
		}
		w := be.Weight * lcm / len(be.Servers)
		if w < 1 {
			w = 1
		}
		for _, s := range be.Servers {
			out = append(out, upServer{s.String(), w})
			total += w
		}
	}
	if len(out) > 0 && r.Invalid > 0 {
		out = append(out, upServer{fmt.Sprintf("127.0.0.1:%d", statusPort), r.Invalid * lcm})
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// cand is one match of one rule, as precedence orders them.
type cand struct {
	r    *Rule
	m    Match
	base string // a prefix without its trailing "/"
}

func (c cand) conditional() bool {
	return c.m.Method != "" || len(c.m.Headers) > 0 || len(c.m.Query) > 0
}

// less is the Gateway API's precedence: Exact before prefixes, longer
// prefixes first, then a method, more headers, more query parameters, and
// then the rule's order (older route, name, index).
func less(a, c cand) bool {
	if (a.m.Kind == PathExact) != (c.m.Kind == PathExact) {
		return a.m.Kind == PathExact
	}
	if la, lc := len(a.base), len(c.base); la != lc {
		return la > lc
	}
	if (a.m.Method != "") != (c.m.Method != "") {
		return a.m.Method != ""
	}
	if len(a.m.Headers) != len(c.m.Headers) {
		return len(a.m.Headers) > len(c.m.Headers)
	}
	if len(a.m.Query) != len(c.m.Query) {
		return len(a.m.Query) > len(c.m.Query)
	}
	return a.r.Order < c.r.Order
}

func elementPrefix(base, p string) bool {
	return base == "" || p == base || strings.HasPrefix(p, base+"/")
}

// server renders one virtual host of a pod port: its locations dispatch
// each path to the first matching rule's internal location.
func server(p *Plan, pp int, pt *Port, host string, def bool) nginxconf.Directive {
	var body []nginxconf.Directive
	listen := []string{fmt.Sprint(pp)}
	if pt.TLS {
		listen = append(listen, "ssl")
	}
	if def {
		listen = append(listen, "default_server")
	}
	body = append(body, d("listen", listen...))
	if pt.TLS {
		if c := certFor(pt, host); c != nil {
			body = append(body, d("ssl_certificate", p.Prefix+"/"+c.Cert), d("ssl_certificate_key", p.Prefix+"/"+c.Key))
		} else {
			body = append(body, d("ssl_reject_handshake", "on"))
		}
	}
	name := host
	if def {
		name = "_"
	}
	body = append(body, d("server_name", name))
	var cands []cand
	var srv *Server
	if s := pt.Servers[host]; s != nil {
		srv = s
	}
	if srv != nil {
		for _, r := range srv.Rules {
			for _, m := range r.Matches {
				c := cand{r: r, m: m, base: m.Path}
				if m.Kind == PathPrefix {
					c.base = strings.TrimSuffix(m.Path, "/")
				}
				cands = append(cands, c)
			}
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return less(cands[i], cands[j]) })
	// Location keys: "= X" for exact paths and prefixes' own path, "X/"
	// below a prefix, "/" for everything else.
	type key struct {
		exact bool
		path  string
	}
	keys := map[key]bool{{false, ""}: true}
	for _, c := range cands {
		switch {
		case c.m.Kind == PathExact:
			keys[key{true, c.m.Path}] = true
		case c.base != "":
			keys[key{true, c.base}] = true
			keys[key{false, c.base}] = true
		}
	}
	var ks []key
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].path != ks[j].path {
			return ks[i].path < ks[j].path
		}
		return ks[i].exact && !ks[j].exact
	})
	for _, k := range ks {
		var in []cand
		for _, c := range cands {
			switch {
			case k.exact && c.m.Kind == PathExact:
				if c.m.Path == k.path {
					in = append(in, c)
				}
			case k.exact:
				if elementPrefix(c.base, k.path) {
					in = append(in, c)
				}
			case c.m.Kind == PathPrefix:
				if c.base == "" || (k.path != "" && elementPrefix(c.base, k.path)) {
					in = append(in, c)
				}
			}
		}
		args := []string{k.path + "/"}
		if k.exact {
			args = []string{"=", k.path}
		}
		body = append(body, b("location", args, dispatch(in)...))
	}
	// Each rule's target.
	seen := map[int]bool{}
	for _, c := range cands {
		if seen[c.r.Order] {
			continue
		}
		seen[c.r.Order] = true
		body = append(body, target(p, pt, c.r))
	}
	return b("server", nil, body...)
}

// certFor is the certificate of the listener a host came through: the
// listener of that exact hostname, else of a wildcard that takes it, else
// the one without a hostname.
func certFor(pt *Port, host string) *TLSFiles {
	if c := pt.Certs[host]; c != nil {
		return c
	}
	best := ""
	var out *TLSFiles
	for h, c := range pt.Certs {
		if strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) && len(h) > len(best) {
			best, out = h, c
		}
	}
	if out != nil {
		return out
	}
	return pt.Certs[""]
}

// targetURI is a rule's internal location.
func targetURI(r *Rule) string { return fmt.Sprintf("/.svcsim-gateway/r%d", r.Order) }

// dispatch sends a request to the first candidate that matches it: the
// method, headers and query parameters the candidates look at are joined
// into $svcsim_key with newlines (which no header value holds) and each
// conditional candidate is a regular expression over it.
func dispatch(in []cand) []nginxconf.Directive {
	var headers, query []string
	hs, qs := map[string]bool{}, map[string]bool{}
	for _, c := range in {
		for _, h := range c.m.Headers {
			if n := varName(h.Name); !hs[n] {
				hs[n] = true
				headers = append(headers, n)
			}
		}
		for _, q := range c.m.Query {
			if !qs[q.Name] {
				qs[q.Name] = true
				query = append(query, q.Name)
			}
		}
	}
	sort.Strings(headers)
	sort.Strings(query)
	var out []nginxconf.Directive
	keyed := false
	for _, c := range in {
		if !c.conditional() {
			return append(out, d("rewrite", "^", targetURI(c.r), "last"))
		}
		if !keyed {
			k := "$request_method"
			for _, h := range headers {
				k += "\n$http_" + h
			}
			for _, q := range query {
				k += "\n$arg_" + q
			}
			out = append(out, d("set", "$svcsim_key", k))
			keyed = true
		}
		re := "^"
		if c.m.Method != "" {
			re += quoteMeta(c.m.Method)
		} else {
			re += "[^\n]*"
		}
		for _, h := range headers {
			v := "[^\n]*"
			for _, m := range c.m.Headers {
				if varName(m.Name) == h {
					v = quoteMeta(m.Value)
				}
			}
			re += "\n" + v
		}
		for _, q := range query {
			v := "[^\n]*"
			for _, m := range c.m.Query {
				if m.Name == q {
					v = quoteMeta(m.Value)
				}
			}
			re += "\n" + v
		}
		out = append(out, b("if", []string{"(", "$svcsim_key", "~", re + "$", ")"}, d("rewrite", "^", targetURI(c.r), "last")))
	}
	return append(out, d("return", "404"))
}

// target is a rule's internal location: its redirect, or its request
// header changes and its upstream.
func target(p *Plan, pt *Port, r *Rule) nginxconf.Directive {
	body := []nginxconf.Directive{d("internal")}
	if rd := r.Redirect; rd != nil {
		scheme := rd.Scheme
		if scheme == "" {
			scheme = "http"
			if pt.TLS {
				scheme = "https"
			}
		}
		port := rd.Port
		if port == 0 && rd.Scheme == "" {
			port = int(pt.Listener)
		}
		host := "$host"
		if rd.Host != "" {
			host = rd.Host
		}
		loc := scheme + "://" + host
		if port != 0 && !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
			loc += fmt.Sprintf(":%d", port)
		}
		body = append(body, d("return", fmt.Sprint(rd.Code), loc+"$request_uri"))
		return b("location", []string{"=", targetURI(r)}, body...)
	}
	if len(upstreamServers(r, p.StatusPort)) == 0 {
		code := "500"
		for _, be := range r.Backends {
			if be.Weight > 0 && r.Invalid == 0 {
				code = "503" // valid backends without ready endpoints
			}
		}
		body = append(body, d("return", code))
		return b("location", []string{"=", targetURI(r)}, body...)
	}
	set := map[string]bool{}
	var hdrs []nginxconf.Directive
	for _, h := range r.SetHeaders {
		set[strings.ToLower(h.Name)] = true
		hdrs = append(hdrs, d("proxy_set_header", h.Name, literal(h.Value)))
	}
	for i, h := range r.AddHeaders {
		set[strings.ToLower(h.Name)] = true
		hdrs = append(hdrs, d("proxy_set_header", h.Name, fmt.Sprintf("$svcsim_add_%d_%d", r.Order, i)))
	}
	for _, h := range r.RemoveHeaders {
		set[strings.ToLower(h)] = true
		hdrs = append(hdrs, d("proxy_set_header", h, ""))
	}
	for _, base := range [][2]string{{"Host", "$http_host"}, {"Connection", ""}, {"X-Forwarded-For", "$remote_addr"}} {
		if !set[strings.ToLower(base[0])] {
			body = append(body, d("proxy_set_header", base[0], base[1]))
		}
	}
	body = append(body, hdrs...)
	body = append(body, d("proxy_pass", fmt.Sprintf("http://svcsim_r%d$request_uri", r.Order)))
	return b("location", []string{"=", targetURI(r)}, body...)
}
