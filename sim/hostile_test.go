package sim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// Hostile and huge manifests: each is refused with a clear message, or
// accepted, in bounded time and memory; a refused batch changes nothing.

// TestDecodeRefusesAliasBomb: nine levels of nine YAML aliases would expand
// to 387 million strings; the YAML decoder (sigs.k8s.io/yaml's goyaml)
// refuses the excessive aliasing at once.
func TestDecodeRefusesAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata:\n  name: bomb\n  annotations:\n")
	b.WriteString(`    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for prev, c := 'a', 'b'; c <= 'i'; prev, c = c, c+1 {
		ref := "*" + string(prev)
		fmt.Fprintf(&b, "    %c: &%c [%s]\n", c, c, strings.Repeat(ref+",", 8)+ref)
	}
	b.WriteString("spec:\n  ports:\n  - port: 80\n")
	start := time.Now()
	_, err := Decode([]byte(b.String()), "bomb.yaml")
	require.Error(t, err)
	require.Equal(t, "bomb.yaml:0: error converting YAML to JSON: yaml: document contains excessive aliasing", err.Error())
	require.Less(t, time.Since(start), 2*time.Second)
}

// TestLoadRefusesHugeFile: a file over MaxManifestBytes is refused before
// it is read (a sparse 50 MB file: no disk, no memory).
func TestLoadRefusesHugeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(50<<20))
	require.NoError(t, f.Close())
	_, err = Load(p)
	require.EqualError(t, err, p+": 52428800 bytes, more than the 33554432 (32 MiB) svcsim reads from one manifest; split it into several files")

	old := Stdin
	t.Cleanup(func() { Stdin = old })
	Stdin = bytes.NewReader(make([]byte, 40<<20))
	_, err = Load("-")
	require.EqualError(t, err, "standard input: more than 33554432 bytes (32 MiB), the most svcsim reads from one manifest; split it into several files")
}

// TestApplyAnnotationRules: the API server's annotation rules, with its
// messages (the same apimachinery validation it runs), and a batch holding
// one bad object changes nothing.
func TestApplyAnnotationRules(t *testing.T) {
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"too long", "a", strings.Repeat("x", 256<<10), `Service "s" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes`},
		{"key with a space", "a b", "v", `Service "s" is invalid: metadata.annotations: Invalid value: "a b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
		{"key with a shell", "$(reboot)", "v", `Service "s" is invalid: metadata.annotations: Invalid value: "$(reboot)": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCluster(t, 2)
			gen := c.Generation()
			good := makeService("default", "good")
			bad := makeService("default", "s", func(s *corev1.Service) { s.Annotations = map[string]string{tc.key: tc.value} })
			_, err := c.Apply([]Object{{Source: "f:0", Obj: good}, {Source: "f:1", Obj: bad}})
			require.Error(t, err)
			require.Equal(t, `error when applying "f:1": `+tc.want, err.Error())
			require.Equal(t, gen, c.Generation(), "a batch with one bad object changes nothing")
			_, err = c.Apply([]Object{{Source: "f:0", Obj: good}})
			require.NoError(t, err, "the good object alone is accepted")
		})
	}
}

// TestApplyCarriesFreeText: annotation values are free text: quotes,
// newlines, ';', $(...), backticks and unicode are stored unchanged (they
// reach no shell and no rule).
func TestApplyCarriesFreeText(t *testing.T) {
	c, _ := newCluster(t, 2)
	odd := map[string]string{
		"quotes":  `"'\"`,
		"newline": "a\nb\r\n-A KUBE-SERVICES -j DROP",
		"shell":   "; rm -rf / ; $(reboot) `id` && echo",
		"unicode": "Ünïcødé ☃ \u202e\u0000",
	}
	svc := makeService("default", "odd", func(s *corev1.Service) { s.Annotations = odd })
	_, err := c.Apply([]Object{{Source: "f:0", Obj: svc}})
	require.NoError(t, err)
	got, err := c.Get("Service", "default", "odd")
	require.NoError(t, err)
	for k, v := range odd {
		require.Equal(t, v, got.(*corev1.Service).Annotations[k], k)
	}
}

// TestTenThousandServices: a 10,000-Service manifest (1.3 MB) decodes in
// seconds and applies in bounded time: 1.9 s on the busy 2-core host with
// the allocation bitmaps, 32-37 s when every create scanned every Service
// (quadratic), which the 30 s bound catches.
func TestTenThousandServices(t *testing.T) {
	var b bytes.Buffer
	for i := range 10000 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s%d\nspec:\n  selector: {app: s%d}\n  ports:\n  - port: 80\n    targetPort: 8080\n", i, i)
	}
	start := time.Now()
	objs, err := Decode(b.Bytes(), "svc10k.yaml")
	require.NoError(t, err)
	require.Len(t, objs, 10000)
	require.Less(t, time.Since(start), 30*time.Second, "decoding 10,000 Services")
	t.Logf("decoded %d bytes, 10,000 Services, in %v", b.Len(), time.Since(start))
	if testing.Short() {
		t.Skip("-short: applying 10,000 Services takes a few seconds here")
	}
	c, _ := newCluster(t, 2)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start = time.Now()
	_, err = c.Apply(objs)
	require.NoError(t, err)
	d := time.Since(start)
	runtime.ReadMemStats(&m1)
	alloc := (m1.TotalAlloc - m0.TotalAlloc) >> 20
	t.Logf("applied 10,000 Services in %v, heap in use %d MB, %d MB allocated meanwhile", d, m1.HeapInuse>>20, alloc)
	require.Less(t, d, 30*time.Second, "applying 10,000 Services")
	// Bounded memory: 73 MB in use and 106 MB allocated here; the bounds
	// are 7x and 10x that, so only a leak or a per-object copy of the store
	// trips them.
	require.Less(t, m1.HeapInuse>>20, uint64(512), "heap in use after applying 10,000 Services, MB")
	require.Less(t, alloc, uint64(1024), "allocated while applying 10,000 Services, MB")
}
