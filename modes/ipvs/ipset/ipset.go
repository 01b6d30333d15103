// Package ipset drives the kernel's IP sets through the ipset(8) binary,
// behind a small Interface with an in-memory Fake that parses the same
// restore scripts. Commands run in the network namespace of the calling
// thread (start them inside netns.NS.Do).
package ipset

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Type is an ipset type.
type Type string

// The types the IPVS proxy mode uses.
const (
	HashIP       Type = "hash:ip"
	HashIPPort   Type = "hash:ip,port"
	HashIPPortIP Type = "hash:ip,port,ip"
	// HashIPPortNet holds load-balancer source ranges
	// ("198.18.1.5,tcp:80,198.18.0.0/24").
	HashIPPortNet Type = "hash:ip,port,net"
	BitmapPort    Type = "bitmap:port"
)

// Set describes a set to create.
type Set struct {
	Name string
	Type Type
}

// CreateLine is the restore-script line creating s
// ("create NAME hash:ip,port family inet hashsize 1024 maxelem 65536").
func (s Set) CreateLine() string {
	if s.Type == BitmapPort {
		return "create " + s.Name + " " + string(s.Type) + " range 0-65535"
	}
	return "create " + s.Name + " " + string(s.Type) + " family inet hashsize 1024 maxelem 65536"
}

// IPPort formats a hash:ip,port entry as ipset prints it ("10.96.0.1,tcp:80").
func IPPort(ip netip.Addr, proto string, port int) string {
	return ip.String() + "," + strings.ToLower(proto) + ":" + strconv.Itoa(port)
}

// IPPortIP formats a hash:ip,port,ip entry ("10.244.1.5,tcp:80,10.244.1.5").
func IPPortIP(ip netip.Addr, proto string, port int, ip2 netip.Addr) string {
	return IPPort(ip, proto, port) + "," + ip2.String()
}

// IPPortNet formats a hash:ip,port,net entry ("198.18.1.5,tcp:80,198.18.0.0/24").
func IPPortNet(ip netip.Addr, proto string, port int, net netip.Prefix) string {
	return IPPort(ip, proto, port) + "," + net.String()
}

// Interface is what the proxier needs from ipset.
type Interface interface {
	// Restore runs script through `ipset restore -exist`: creating an
	// existing set with the same type, adding a present entry and deleting
	// a missing one are not errors.
	Restore(ctx context.Context, script []byte) error
	// ListSets returns the names of all sets (`ipset list -n`), sorted.
	ListSets(ctx context.Context) ([]string, error)
	// Entries returns the members of a set (`ipset save name`), sorted.
	Entries(ctx context.Context, name string) ([]string, error)
	// Destroy removes a set (`ipset destroy name`); it fails while an
	// iptables rule references it.
	Destroy(ctx context.Context, name string) error
}

// Exec implements Interface with the ipset binary.
type Exec struct {
	// Path is the binary, "ipset" (from $PATH) when empty.
	Path string
}

var _ Interface = (*Exec)(nil)

func (e *Exec) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	path := e.Path
	if path == "" {
		path = "ipset"
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ipset %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Restore implements Interface.
func (e *Exec) Restore(ctx context.Context, script []byte) error {
	_, err := e.run(ctx, script, "restore", "-exist")
	return err
}

// ListSets implements Interface.
func (e *Exec) ListSets(ctx context.Context) ([]string, error) {
	out, err := e.run(ctx, nil, "list", "-n")
	if err != nil {
		return nil, err
	}
	names := strings.Fields(string(out))
	sort.Strings(names)
	return names, nil
}

// Entries implements Interface.
func (e *Exec) Entries(ctx context.Context, name string) ([]string, error) {
	out, err := e.run(ctx, nil, "save", name)
	if err != nil {
		return nil, err
	}
	return ParseSave(out, name), nil
}

// ParseSave returns, sorted, the entries of set name in `ipset save` output
// (its "add NAME ENTRY ..." lines; other sets and lines are ignored).
func ParseSave(out []byte, name string) []string {
	var entries []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "add" && f[1] == name {
			entries = append(entries, f[2])
		}
	}
	sort.Strings(entries)
	return entries
}

// Destroy implements Interface.
func (e *Exec) Destroy(ctx context.Context, name string) error {
	_, err := e.run(ctx, nil, "destroy", name)
	return err
}

// Fake is an in-memory ipset model: it parses restore scripts (create, add,
// del, flush, destroy), checks that sets exist and entries fit their type,
// and like the real tool stops at the first bad line, keeping earlier ones.
type Fake struct {
	mu       sync.Mutex
	sets     map[string]*fakeSet
	Restores int // Restore calls
	Lines    int // restore lines applied
}

type fakeSet struct {
	typ     Type
	entries map[string]bool
}

var _ Interface = (*Fake)(nil)

// NewFake returns a Fake without sets.
func NewFake() *Fake { return &Fake{sets: map[string]*fakeSet{}} }

// Restore implements Interface.
func (f *Fake) Restore(_ context.Context, script []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Restores++
	sc := bufio.NewScanner(bytes.NewReader(script))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || line == "COMMIT" {
			continue
		}
		if err := f.apply(strings.Fields(line)); err != nil {
			return fmt.Errorf("ipset restore line %d %q: %w", n, line, err)
		}
		f.Lines++
	}
	return nil
}

func (f *Fake) apply(w []string) error {
	if len(w) < 2 {
		return errors.New("syntax error")
	}
	cmd, name := w[0], w[1]
	s := f.sets[name]
	if cmd != "create" && s == nil {
		return fmt.Errorf("set %s does not exist", name)
	}
	switch cmd {
	case "create":
		if len(w) < 3 {
			return errors.New("create without type")
		}
		t := Type(w[2])
		switch t {
		case HashIP, HashIPPort, HashIPPortIP, HashIPPortNet, BitmapPort:
		default:
			return fmt.Errorf("unknown set type %q", t)
		}
		if s != nil {
			if s.typ != t {
				return fmt.Errorf("set %s exists with type %s", name, s.typ)
			}
			return nil
		}
		f.sets[name] = &fakeSet{typ: t, entries: map[string]bool{}}
	case "add", "del":
		if len(w) != 3 {
			return errors.New("want one entry")
		}
		if err := checkEntry(s.typ, w[2]); err != nil {
			return err
		}
		if cmd == "add" {
			s.entries[w[2]] = true
		} else {
			delete(s.entries, w[2])
		}
	case "flush":
		s.entries = map[string]bool{}
	case "destroy":
		delete(f.sets, name)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

// checkEntry validates an entry the way the kernel's type would parse it.
func checkEntry(t Type, e string) error {
	parts := strings.Split(e, ",")
	want := map[Type]int{HashIP: 1, HashIPPort: 2, HashIPPortIP: 3, HashIPPortNet: 3, BitmapPort: 1}[t]
	if len(parts) != want {
		return fmt.Errorf("entry %q does not fit %s", e, t)
	}
	if t == BitmapPort {
		if p, err := strconv.Atoi(parts[0]); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("entry %q: bad port", e)
		}
		return nil
	}
	if _, err := netip.ParseAddr(parts[0]); err != nil {
		return fmt.Errorf("entry %q: %w", e, err)
	}
	if len(parts) > 1 {
		proto, port, ok := strings.Cut(parts[1], ":")
		if p, err := strconv.Atoi(port); !ok || (proto != "tcp" && proto != "udp") || err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("entry %q: bad proto:port", e)
		}
	}
	if len(parts) > 2 && t == HashIPPortNet {
		if _, err := netip.ParsePrefix(parts[2]); err != nil {
			return fmt.Errorf("entry %q: %w", e, err)
		}
	} else if len(parts) > 2 {
		if _, err := netip.ParseAddr(parts[2]); err != nil {
			return fmt.Errorf("entry %q: %w", e, err)
		}
	}
	return nil
}

// ListSets implements Interface.
func (f *Fake) ListSets(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.sets))
	for n := range f.sets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Entries implements Interface.
func (f *Fake) Entries(_ context.Context, name string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[name]
	if !ok {
		return nil, fmt.Errorf("ipset save %s: set does not exist", name)
	}
	out := make([]string, 0, len(s.entries))
	for e := range s.entries {
		out = append(out, e)
	}
	sort.Strings(out)
	return out, nil
}

// Destroy implements Interface.
func (f *Fake) Destroy(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sets[name]; !ok {
		return fmt.Errorf("ipset destroy %s: set does not exist", name)
	}
	delete(f.sets, name)
	return nil
}
