package scenarios

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/roundtripper"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"

	"github.com/svcsim/svcsim/addons/gateway"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// ConformanceEnv turns the upstream conformance run on: it takes about a
// minute (more where tests fail and wait out their timeouts), so it runs
// once per make test, on the kube-proxy datapath the Makefile's
// GATEWAY_CONFORMANCE_MODE names, and elsewhere only when asked.
const ConformanceEnv = "SVCSIM_GATEWAY_CONFORMANCE"

// TestGatewayConformance runs the Gateway API's own conformance suite
// (sigs.k8s.io/gateway-api/conformance v1.6.3, the GATEWAY-HTTP profile's
// core tests: features Gateway, HTTPRoute and ReferenceGrant) against
// svcsim's Gateway controller on the kubernetes plane, with the suite's
// HTTP client dialling from the external namespace. The suite's report
// (its YAML, as upstream's report files are) goes to the results
// directory as gateway-conformance-report.yaml; every test's outcome is a
// figure of the result (1 passed, 0 failed, -1 skipped) and the counts
// are figures too. The scenario fails when the suite cannot run or write
// its report; a conformance test that fails is the suite's subtest
// failing, so it fails the scenario too.
func TestGatewayConformance(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-conformance", Title: "Gateway API: the upstream conformance suite v1.6.3 (GATEWAY-HTTP, core)", Group: results.GroupGateway}
	opts := gatewayOptions
	opts.Needs = func() string {
		if why := gatewayNeeds(); why != "" {
			return why
		}
		if os.Getenv(ConformanceEnv) != "1" {
			return "the upstream conformance run takes about a minute: make kube-scenarios runs it on kube-proxy/nftables; here set " + ConformanceEnv + "=1 (on the kubernetes plane: SVCSIM_MODES=kube-proxy/nftables)"
		}
		return ""
	}
	harness.Run(t, sc, opts, func(h *harness.H) {
		if !h.Kubernetes() {
			h.Result.Reason = "the upstream suite talks to an API server (controller-runtime): it runs on the kubernetes plane (SVCSIM_MODES=kube-proxy/nftables)"
			h.T.Skip(h.Result.Reason)
		}
		rc, ok := h.P.(interface{ RESTConfig() (*rest.Config, error) })
		if !ok {
			h.Fatalf("the kubernetes plane %T gives no REST config", h.P)
		}
		cfg, err := rc.RESTConfig()
		if err != nil {
			h.Fatalf("REST config: %v", err)
		}
		h.Apply(gateway.Manifests)
		c, err := crclient.New(cfg, crclient.Options{})
		if err != nil {
			h.Fatalf("controller-runtime client: %v", err)
		}
		for _, add := range []func() error{func() error { return gwv1.Install(c.Scheme()) }, func() error { return apiextensionsv1.AddToScheme(c.Scheme()) }} {
			if err := add(); err != nil {
				h.Fatalf("scheme: %v", err)
			}
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			h.Fatalf("clientset: %v", err)
		}
		ext := external(h)
		timeouts := config.DefaultTimeoutConfig()
		// Bounded: a failing test waits at most these.
		for _, d := range []*time.Duration{&timeouts.GatewayMustHaveAddress, &timeouts.GatewayMustHaveCondition, &timeouts.GatewayStatusMustHaveListeners,
			&timeouts.GatewayListenersMustHaveConditions, &timeouts.GWCMustBeAccepted, &timeouts.HTTPRouteMustNotHaveParents, &timeouts.HTTPRouteMustHaveCondition,
			&timeouts.RouteMustHaveParents, &timeouts.MaxTimeToConsistency, &timeouts.NamespacesMustBeReady, &timeouts.LatestObservedGenerationSet, &timeouts.DefaultTestTimeout} {
			if *d > 30*time.Second {
				*d = 30 * time.Second
			}
		}
		// Every test's own outcome, as its subtest ended (the suite's report
		// counts them but names only the failed and skipped ones).
		outcomes := &testOutcomes{m: map[string]string{}}
		cSuite, err := suite.NewConformanceTestSuite(suite.ConformanceOptions{
			Hook: outcomes.record,
			ConfigurableOptions: suite.ConfigurableOptions{
				GatewayClassName:     gateway.ClassName,
				CleanupBaseResources: true,
				CleanupTestResources: true,
				TimeoutConfig:        timeouts,
				SupportedFeatures:    []features.FeatureName{features.SupportGateway, features.SupportHTTPRoute, features.SupportReferenceGrant},
				ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName},
				Implementation: confv1.Implementation{Organization: "svcsim", Project: "svcsim", URL: "https://github.com/svcsim/svcsim",
					Version: gateway.ModuleVersion(), Contact: []string{"svcsim maintainers"}},
			},
			Client: c, Clientset: cs, RestConfig: cfg, ManifestFS: []fs.FS{&conformance.Manifests},
			RoundTripper: &roundtripper.DefaultRoundTripper{TimeoutConfig: timeouts,
				CustomDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					return topology.DialContext(ctx, ext.NS, network, addr)
				}},
		})
		if err != nil {
			h.Fatalf("conformance suite: %v", err)
		}
		start := time.Now()
		// The suite's tests are parallel subtests: they finish after Run
		// returns, so the report is made in a cleanup (which runs once
		// they are done, before the harness writes the result).
		h.T.Cleanup(func() { conformanceReport(h, cSuite, outcomes, start) })
		cSuite.Setup(h.T, tests.ConformanceTests)
		if err := cSuite.Run(h.T, tests.ConformanceTests); err != nil {
			h.Fatalf("run the conformance suite: %v", err)
		}
	})
}

// testOutcomes collects each conformance test's outcome from the suite's
// Hook (the tests run in parallel).
type testOutcomes struct {
	mu sync.Mutex
	m  map[string]string // ShortName -> passed, failed, skipped
}

func (o *testOutcomes) record(t *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) {
	out := "passed"
	switch {
	case t.Failed():
		out = "failed"
	case t.Skipped():
		out = "skipped"
	}
	o.mu.Lock()
	o.m[test.ShortName] = out
	o.mu.Unlock()
}

// conformanceReport writes the suite's report into the results directory
// and records its counts and every test that ran as figures (1 passed,
// 0 failed; a core test skipped -1; the tests skipped as needing a
// feature svcsim does not claim are only counted).
func conformanceReport(h *harness.H, cSuite *suite.ConformanceTestSuite, outcomes *testOutcomes, start time.Time) {
	h.Figure("conformance run", time.Since(start).Seconds(), "s")
	report, err := cSuite.Report()
	h.Check(err == nil, "the upstream suite reported", "%v", err)
	if err != nil {
		return
	}
	b, err := yaml.Marshal(report)
	if err != nil {
		h.Check(false, "the suite's report encodes", "%v", err)
		return
	}
	path := filepath.Join(harness.ResultsDir(), "gateway-conformance-report.yaml")
	werr := os.MkdirAll(filepath.Dir(path), 0o755)
	if werr == nil {
		werr = os.WriteFile(path, b, 0o644)
	}
	h.Check(werr == nil, "the suite's report is in the results directory", "%s: %v", path, werr)
	var names []string
	for _, ct := range tests.ConformanceTests {
		names = append(names, ct.ShortName)
	}
	sort.Strings(names)
	for _, p := range report.ProfileReports {
		st := p.Core
		h.Figure(p.Name+" core tests passed", float64(st.Passed), "")
		h.Figure(p.Name+" core tests failed", float64(st.Failed), "")
		h.Figure(p.Name+" core tests skipped", float64(st.Skipped), "")
		failed, skipped := sets.New(st.FailedTests...), sets.New(st.SkippedTests...)
		outcomes.mu.Lock()
		passed, unsupported := 0, 0
		for _, n := range names {
			switch {
			case failed.Has(n) || outcomes.m[n] == "failed":
				h.Figure(n, 0, "failed")
			case skipped.Has(n):
				h.Figure(n, -1, "skipped")
			case outcomes.m[n] == "passed":
				h.Figure(n, 1, "passed")
				passed++
			default:
				unsupported++
			}
		}
		outcomes.mu.Unlock()
		h.Check(uint32(passed) == st.Passed, "every passed test named", "%d tests passed by their subtests, the report counts %d", passed, st.Passed)
		h.Figure("tests not run (a feature svcsim does not claim)", float64(unsupported), "")
		h.T.Logf("%s: %s (passed %d, failed %d, skipped %d; failed %v)", p.Name, p.Summary, st.Passed, st.Failed, st.Skipped, st.FailedTests)
	}
}
