// Package results defines the versioned JSON files that scenarios and
// benchmarks write into a results directory, and that package report renders.
//
// Layout of a results directory:
//
//	scenario-<scenario>--<mode>.json   one Result per scenario and datapath
//	bench-<datapath>--<metric>.json    one Bench per datapath and metric
//	env-<lane>.json                    the Env of each lane that wrote results
//
// Readers must reject files whose Schema is newer than SchemaVersion.
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SchemaVersion is the version written into every file. Bump it when a field
// changes meaning or is removed; adding optional fields does not need a bump.
const SchemaVersion = 1

// Status is the outcome of one scenario on one datapath.
type Status string

// Outcomes.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Groups, in the seed's order; a scenario belongs to one.
const (
	GroupService      = "Service"
	GroupSelectorless = "Service without a selector"
	GroupProxyModes   = "Virtual IPs and proxy modes"
	GroupMultiPort    = "Multi-port Services"
	GroupDiscovery    = "Service discovery"
	GroupHeadless     = "Headless Services"
	GroupPublishing   = "Publishing Services"
	GroupIngress      = "Ingress"
	GroupGateway      = "Gateway API"
	GroupIsolation    = "Isolation"
	GroupFaults       = "Faults"
	GroupScale        = "Scale and rule-update latency"
)

// Env describes where a result was measured.
type Env struct {
	// Lane is "host" or "vm:<kernel>" for the qemu kernel lane.
	Lane     string    `json:"lane"`
	Kernel   string    `json:"kernel"`
	CPU      string    `json:"cpu"`
	CPUs     int       `json:"cpus"`
	Iptables string    `json:"iptables,omitempty"`
	Nft      string    `json:"nft,omitempty"`
	Ipvsadm  string    `json:"ipvsadm,omitempty"`
	Time     time.Time `json:"time"`
}

// Assertion is one checked fact of a scenario.
type Assertion struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Figure is one measured number.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// BackendCount is how many requests one backend received.
type BackendCount struct {
	Backend  string  `json:"backend"`
	Count    int     `json:"count"`
	Expected float64 `json:"expected"`
}

// Distribution is a load-distribution measurement and its statistical test.
type Distribution struct {
	Requests int            `json:"requests"`
	Backends []BackendCount `json:"backends"`
	// Test names the test, e.g. "chi-square goodness of fit vs uniform".
	Test      string  `json:"test,omitempty"`
	Statistic float64 `json:"statistic,omitempty"`
	DF        int     `json:"df,omitempty"`
	PValue    float64 `json:"pValue,omitempty"`
	// Alpha is the significance level the scenario asserted against.
	Alpha float64 `json:"alpha,omitempty"`
	// RoundRobin is set for modes expected to rotate exactly; Exact then
	// says whether counts differed by at most one and followed the rotation.
	RoundRobin bool `json:"roundRobin,omitempty"`
	Exact      bool `json:"exact,omitempty"`
}

// Affinity is a session-affinity measurement.
type Affinity struct {
	Requests       int     `json:"requests"`
	OnPinned       int     `json:"onPinned"`
	Stickiness     float64 `json:"stickiness"`
	TimeoutSeconds int     `json:"timeoutSeconds"`
	// ObservedExpirySeconds is the idle time after which a request first
	// reached a different backend (0 if not measured).
	ObservedExpirySeconds float64 `json:"observedExpirySeconds,omitempty"`
}

// Result is one scenario run on one datapath.
type Result struct {
	Schema   int    `json:"schema"`
	Scenario string `json:"scenario"`
	Title    string `json:"title"`
	Group    string `json:"group"`
	Mode     string `json:"mode"`
	// ControlPlane is the plane the scenario ran on ("embedded",
	// "kubernetes") and Versions its components' versions (plane.Info).
	ControlPlane string            `json:"controlPlane,omitempty"`
	Versions     map[string]string `json:"versions,omitempty"`
	Status       Status            `json:"status"`
	// Reason explains a skip or a failure.
	Reason       string        `json:"reason,omitempty"`
	Started      time.Time     `json:"started"`
	Seconds      float64       `json:"seconds"`
	Env          Env           `json:"env"`
	Assertions   []Assertion   `json:"assertions,omitempty"`
	Figures      []Figure      `json:"figures,omitempty"`
	Distribution *Distribution `json:"distribution,omitempty"`
	Affinity     *Affinity     `json:"affinity,omitempty"`
	// KernelState is an excerpt of the node's rules for one Service, as the
	// real tool prints it (iptables-save, nft list ruleset, ipvsadm -Ln).
	KernelState string `json:"kernelState,omitempty"`
	// Info is what the datapath's descriptor says about its place in the
	// report (absent in files written before it existed).
	Info *DatapathInfo `json:"datapathInfo,omitempty"`
	// RuleDiff compares the node's rules with the other proxy's for the
	// same objects (svcsim's datapath against the genuine kube-proxy's of
	// the same kernel), when the scenario made one.
	RuleDiff *RuleDiff `json:"ruleDiff,omitempty"`
}

// RuleDiff is what remains between svcsim's normalised rules and
// kube-proxy's for one dump command (package modes/rulediff).
type RuleDiff struct {
	// Dump names the dump command compared ("iptables-nft-save").
	Dump string `json:"dump"`
	// Lines is the number of svcsim's normalised lines.
	Lines int `json:"lines,omitempty"`
	// Missing says why nothing was compared (no recording of the other
	// side).
	Missing string `json:"missing,omitempty"`
	// Differences are the lines only one side has, each with its mark.
	Differences []RuleDiffLine `json:"differences,omitempty"`
	// Settled are the differences fixed on svcsim's side, with the test
	// that pins each fix.
	Settled []RuleDiffLine `json:"settled,omitempty"`
}

// RuleDiffLine is one normalised line only one side has (Side: "svcsim"
// or "kube-proxy"), marked "fixed-by-test", "intentional" or "open" with
// its reason; Mark is empty for a line no known difference explains.
type RuleDiffLine struct {
	Side   string `json:"side"`
	Text   string `json:"text"`
	Mark   string `json:"mark,omitempty"`
	Reason string `json:"reason,omitempty"`
	Test   string `json:"test,omitempty"`
}

// DatapathInfo is the part of a datapath's descriptor (package modes) the
// report needs. The writer copies it from the descriptor at run time, so the
// report reads it from the files without linking the datapaths.
type DatapathInfo struct {
	// Order is the datapath's column position, lowest first.
	Order int `json:"order"`
	// Claim is the seed's claim about the datapath's rule-update cost that
	// the report checks its benchmark figures against: ClaimNotIncremental,
	// ClaimIncremental, or empty for none.
	Claim string `json:"claim,omitempty"`
}

// The seed's claims about rule-update cost (DatapathInfo.Claim); the values
// are those of modes.Claim*.
const (
	// ClaimNotIncremental: "iptables updates are not incremental".
	ClaimNotIncremental = "not-incremental"
	// ClaimIncremental: "IPVS updates are incremental".
	ClaimIncremental = "incremental"
)

// Point is one x position of a benchmark series, summarising Reps runs.
type Point struct {
	// N is the x value (number of Services, usually).
	N      int     `json:"n"`
	Reps   int     `json:"reps"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P90    float64 `json:"p90,omitempty"`
	P99    float64 `json:"p99,omitempty"`
	// Extra holds side figures (rule counts, kernel memory, ratio to floor).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Bench is one metric measured on one datapath over a sweep.
type Bench struct {
	Schema   int    `json:"schema"`
	Datapath string `json:"datapath"`
	// Metric names what was measured, e.g. "full-sync", "endpoint-change",
	// "floor-restore", "first-packet", "convergence", "rps-keepalive".
	Metric string  `json:"metric"`
	Unit   string  `json:"unit"`
	XLabel string  `json:"xLabel,omitempty"`
	Env    Env     `json:"env"`
	Points []Point `json:"points"`
	Note   string  `json:"note,omitempty"`
	// Info is what the datapath's descriptor says about its place in the
	// report (absent in files written before it existed).
	Info *DatapathInfo `json:"datapathInfo,omitempty"`
	// FloorFor, on a "floor-*" metric (the raw cost of the tool alone, e.g.
	// iptables-restore of the same ruleset), names the metrics whose charts
	// draw this floor as a dashed line; empty means the rule-update metrics
	// "full-sync" and "endpoint-change".
	FloorFor []string `json:"floorFor,omitempty"`
}

// Set is everything read from one results directory.
type Set struct {
	Envs    []Env
	Results []Result
	Benches []Bench
}

// Safe turns a mode or scenario name into a file-name fragment.
func Safe(s string) string {
	return strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(s)
}

// WriteResult stores r in dir as scenario-<scenario>--<mode>.json.
func WriteResult(dir string, r Result) error {
	r.Schema = SchemaVersion
	return writeJSON(dir, fmt.Sprintf("scenario-%s--%s.json", Safe(r.Scenario), Safe(r.Mode)), r)
}

// WriteBench stores b in dir as bench-<datapath>--<metric>.json.
func WriteBench(dir string, b Bench) error {
	b.Schema = SchemaVersion
	return writeJSON(dir, fmt.Sprintf("bench-%s--%s.json", Safe(b.Datapath), Safe(b.Metric)), b)
}

// WriteEnv stores e in dir as env-<lane>.json.
func WriteEnv(dir string, e Env) error {
	return writeJSON(dir, fmt.Sprintf("env-%s.json", Safe(e.Lane)), struct {
		Schema int `json:"schema"`
		Env
	}{SchemaVersion, e})
}

func writeJSON(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create results dir: %w", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	// A temporary file beside it, synced, then renamed: a reader never sees
	// half a file, and a failed write (a full or read-only file system)
	// leaves none.
	// Its name is unique (CreateTemp): two writers of one file, such as two
	// scenario binaries writing env-host.json into one directory, must not
	// rename each other's temporary file away.
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", name, dir, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s in %s: %w", name, dir, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fail(err)
	}
	return nil
}

// ReadDir loads every results file in dir, sorted by scenario then mode.
func ReadDir(dir string) (*Set, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read results dir: %w", err)
	}
	set := &Set{}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var head struct {
			Schema int `json:"schema"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if head.Schema > SchemaVersion {
			errs = append(errs, fmt.Errorf("%s: schema %d is newer than %d", name, head.Schema, SchemaVersion))
			continue
		}
		switch {
		case strings.HasPrefix(name, "scenario-"):
			var r Result
			if err := json.Unmarshal(b, &r); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			set.Results = append(set.Results, r)
		case strings.HasPrefix(name, "bench-"):
			var bb Bench
			if err := json.Unmarshal(b, &bb); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			set.Benches = append(set.Benches, bb)
		case strings.HasPrefix(name, "env-"):
			var en Env
			if err := json.Unmarshal(b, &en); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			set.Envs = append(set.Envs, en)
		}
	}
	sort.Slice(set.Results, func(i, j int) bool {
		a, b := set.Results[i], set.Results[j]
		if a.Scenario != b.Scenario {
			return a.Scenario < b.Scenario
		}
		return a.Mode < b.Mode
	})
	sort.Slice(set.Benches, func(i, j int) bool {
		a, b := set.Benches[i], set.Benches[j]
		if a.Metric != b.Metric {
			return a.Metric < b.Metric
		}
		return a.Datapath < b.Datapath
	})
	return set, errors.Join(errs...)
}
