# svcsim: see README.md. Every target that needs root says so; run with sudo.
SHELL      := /bin/bash
GO         ?= go
RESULTS    ?= $(CURDIR)/results
# KUBE=0 leaves the kubernetes plane's scenarios out of make test.
KUBE       ?= 1
BIN        := $(CURDIR)/bin/svcsim
export SVCSIM_RESULTS_DIR := $(RESULTS)

# Debian/Ubuntu packages the suite uses; `make deps` installs the missing ones.
# OPT_PKGS are installed when the distribution has them (Ubuntu ships Chromium
# as a snap only; there the report's browser test skips and says so).
PKGS     := iproute2 iptables nftables ipset ipvsadm conntrack curl dnsutils procps psmisc kmod cpio
OPT_PKGS := chromium qemu-system-x86 qemu-system-common

# The kernel lane: a Debian kernel under qemu for datapaths the host kernel
# lacks (IPVS here). KERNEL picks it (6.1 or 6.12); VM_MODES the datapaths.
KERNEL     ?= 6.1
VM_MODES   ?=
# LANE_MODES lists, comma-separated, the datapaths only the kernel lane can
# run here, as their descriptors' probes say (ipvs without IP_VS); it is
# evaluated only by the recipes that use it.
LANE_MODES  = $(GO) run ./cmd/svcsim datapaths --lane kernel --plane embedded
# KUBE_MODES lists the kubernetes plane's datapaths (plane/kube/cluster)
# that run on this host, as their descriptors say: the genuine kube-proxy's
# ("kube-proxy/nftables") and svcsim's own fed from its API server
# ("nftables@kubernetes").
KUBE_MODES  = $(BIN) datapaths --lane host --plane kubernetes
# KUBE_MODES_MATCH narrows them (an extended regular expression): `make
# test-kube-proxy` runs only bin/k8s's own (^kube-proxy/).
KUBE_MODES_MATCH ?= .
# KUBE_SET is what kube-scenarios runs: "all" (make demo, and the default)
# every datapath KUBE_MODES lists over every scenario; "test" (make test,
# whose 45-minute budget has no room for four more full legs) kube-proxy's
# over every scenario and svcsim's KUBE_TEST_OWN over KUBE_TEST_SUBSET only
# (ClusterIP, NodePort, affinity on both, an endpoint change and both
# traffic policies; README.md gives its cost).
KUBE_SET        ?= all
KUBE_TEST_OWN   := nftables@kubernetes
KUBE_TEST_SUBSET := TestClusterIPDistribution|TestNodePort|TestSessionAffinity|TestSessionAffinityNodePort|TestEndpointChanges|TestExternalTrafficPolicy|TestInternalTrafficPolicy
# KUBE_PARALLEL is how many kubernetes planes kube-scenarios runs side by side.
KUBE_PARALLEL   ?= 4

.PHONY: all build kube kube-scenarios kube-pin test-kube-proxy kube-proxy-diff test-kube-loop kube-userspace FORCE deps deps-nginx test fuzz actionlint unit unit-unprivileged scenarios demo report clean down vet size-check fmt-check tidy-check vm-build vm-test vm-selftest clean-results

all: build

build:
	$(GO) build -o $(BIN) ./cmd/svcsim

# The genuine Kubernetes components (module upstream/, see README.md): one
# multi-call binary, rebuilt only when its module or main changes (the Go
# build cache keeps a rebuild short). Without DWARF and symbol table (-s -w;
# stack traces stay): 30 % smaller, a lighter link. K8S_VERSION is the k8s.io/kubernetes
# line of upstream/go.mod; `make kube-pin K8S_VERSION=v1.X.Y` moves it and
# its 31 staging modules (v0.X.Y) together.
# KUBERNETES_SRC, when set, is a local kubernetes source tree: `make kube`
# then builds bin/k8s-local from it (upstream/local-build.sh: a temporary
# copy of upstream/go.mod with replace directives onto the tree and its
# staging modules, `go build -modfile`; always rebuilt, the build cache
# keeps it to the changed packages and the link), and every target that runs
# the kubernetes plane (kube-scenarios, test-kube-proxy, test, demo) runs
# that build. bin/k8s, the pinned release, stays what kube-proxy-diff
# compares against.
KUBERNETES_SRC ?=
KUBE_PINNED  := $(CURDIR)/bin/k8s
KUBE_LOCAL   := $(CURDIR)/bin/k8s-local
KUBE_BIN     := $(if $(KUBERNETES_SRC),$(KUBE_LOCAL),$(KUBE_PINNED))
K8S_VERSION  := $(shell awk '$$1=="k8s.io/kubernetes" && $$2 ~ /^v/ {print $$2; exit}' upstream/go.mod)
K8S_MINOR    := $(word 2,$(subst ., ,$(K8S_VERSION)))
KUBE_SOURCES := upstream/go.mod upstream/go.sum $(wildcard upstream/cmd/k8s/*.go)

kube: $(KUBE_BIN)

$(KUBE_LOCAL): FORCE
	@mkdir -p $(dir $@)
	upstream/local-build.sh "$(KUBERNETES_SRC)" $@

FORCE:

$(KUBE_PINNED): $(KUBE_SOURCES)
	@mkdir -p $(dir $@)
	cd upstream && date=$$($(GO) list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes) && \
	ld=""; for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do \
	  ld="$$ld -X $$pkg.gitVersion=$(K8S_VERSION) -X $$pkg.gitMajor=1 -X $$pkg.gitMinor=$(K8S_MINOR)"; \
	  ld="$$ld -X $$pkg.gitTreeState=clean -X $$pkg.buildDate=$$date"; \
	done; \
	$(GO) build -trimpath -ldflags "-s -w$$ld" -o $@.tmp ./cmd/k8s && mv $@.tmp $@

# kube-proxy-1.25 is kube-proxy of the last minor release with the userspace
# proxier, from its own module (upstream/kubeproxy125, see README.md), for
# the datapath kube-proxy-1.25/userspace; stamped with its version as
# bin/k8s is. Not part of `make kube`: `make kube-userspace` builds it.
KUBEPROXY125_BIN     := $(CURDIR)/bin/kube-proxy-1.25
KUBEPROXY125_VERSION := $(shell awk '$$1=="k8s.io/kubernetes" && $$2 ~ /^v/ {print $$2; exit}' upstream/kubeproxy125/go.mod)
KUBEPROXY125_SOURCES := upstream/kubeproxy125/go.mod upstream/kubeproxy125/go.sum $(wildcard upstream/kubeproxy125/cmd/kube-proxy-1.25/*.go)

kube-userspace: $(KUBEPROXY125_BIN)

$(KUBEPROXY125_BIN): $(KUBEPROXY125_SOURCES)
	@mkdir -p $(dir $@)
	cd upstream/kubeproxy125 && v=$(KUBEPROXY125_VERSION) && minor=$$(echo $$v | cut -d. -f2) && \
	date=$$($(GO) list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes) && \
	ld=""; for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do \
	  ld="$$ld -X $$pkg.gitVersion=$$v -X $$pkg.gitMajor=1 -X $$pkg.gitMinor=$$minor"; \
	  ld="$$ld -X $$pkg.gitTreeState=clean -X $$pkg.buildDate=$$date"; \
	done; \
	$(GO) build -trimpath -ldflags "-s -w$$ld" -o $@.tmp ./cmd/kube-proxy-1.25 && mv $@.tmp $@

kube-pin:
	@case "$(K8S_VERSION)" in v1.*.*) ;; *) echo "K8S_VERSION=v1.X.Y wanted"; exit 1;; esac
	cd upstream && staging=v0.$(patsubst v1.%,%,$(K8S_VERSION)) && \
	sed -i -E "s|^(\tk8s.io/kubernetes) v[0-9.]+$$|\1 $(K8S_VERSION)|; s|^(\tk8s.io/[a-z-]+ => k8s.io/[a-z-]+) v0\.[0-9.]+$$|\1 $$staging|" go.mod && \
	GOFLAGS=-mod=mod $(GO) mod tidy

# deps installs missing system packages (only those missing), nginx (deps-nginx)
# and Go modules.
deps:
	@installed() { dpkg-query -W -f='$${Status}' $$1 2>/dev/null | grep -q "install ok installed"; }; \
	missing=""; for p in $(PKGS); do installed $$p || missing="$$missing $$p"; done; \
	optional=""; for p in $(OPT_PKGS); do installed $$p || optional="$$optional $$p"; done; \
	if [ -z "$$missing$$optional" ]; then echo "system packages: all present"; exit 0; fi; \
	apt-get update -qq; \
	for p in $$optional; do \
	  if apt-cache show $$p >/dev/null 2>&1; then missing="$$missing $$p"; else echo "not available here, skipped: $$p"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(MAKE) --no-print-directory deps-nginx
	$(GO) mod download
	cd upstream && $(GO) mod download
	cd upstream/kubeproxy125 && $(GO) mod download

# deps-nginx installs Debian's nginx (the ingress add-on runs it, only ever
# inside a pod's or node's namespace, as `nginx -p <run dir> -c <conf> -e
# <log>`) without ever starting it: a policy-rc.d that refuses every service
# action is in place before the install (a machine's own is put aside and
# restored after), and afterwards the unit is stopped and disabled, so
# nothing of nginx listens in the host's root network namespace.
deps-nginx:
	@if dpkg-query -W -f='$${Status}' nginx 2>/dev/null | grep -q "install ok installed"; then \
	  echo "nginx: present ($$(dpkg-query -W -f='$${Version}' nginx))"; \
	else \
	  set -e; prc=/usr/sbin/policy-rc.d; saved=$$prc.svcsim-saved; \
	  if [ -e $$prc ]; then mv $$prc $$saved; fi; \
	  trap 'rm -f $$prc; if [ -e $$saved ]; then mv $$saved $$prc; fi' EXIT; \
	  printf '#!/bin/sh\n# svcsim make deps: install nginx without starting it\nexit 101\n' >$$prc; chmod 755 $$prc; \
	  echo "installing: nginx (not started: policy-rc.d refuses)"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; \
	fi; \
	if [ -d /run/systemd/system ]; then systemctl stop nginx.service 2>/dev/null || true; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet nginx.service 2>/dev/null || true; fi; \
	if command -v update-rc.d >/dev/null; then update-rc.d nginx disable >/dev/null 2>&1 || true; fi; \
	if ss -Hltnp 2>/dev/null | grep -q '"nginx"'; then \
	  echo "deps-nginx: an nginx listens in the host's root network namespace (stop it: systemctl stop nginx)"; exit 1; \
	fi

vet:
	$(GO) vet ./...

# tidy-check fails when `go mod tidy` would change go.mod or go.sum, of this
# module, of upstream/ or of upstream/kubeproxy125 (CI builds with -mod=readonly, so an untidy file
# would otherwise only show up as a confusing build error, or not at all).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy (diff above): run go mod tidy"; exit 1; }
	@cd upstream && $(GO) mod tidy -diff || { echo "upstream/go.mod/go.sum are not tidy (diff above): run go mod tidy in upstream/"; exit 1; }
	@cd upstream/kubeproxy125 && $(GO) mod tidy -diff || { echo "upstream/kubeproxy125/go.mod/go.sum are not tidy (diff above): run go mod tidy there"; exit 1; }

# size-check fails on any tracked file over 1 MiB: a binary swept into a
# commit bloats every clone for good, and GitHub refuses files over 100 MB.
size-check:
	@big="$$(git ls-files -z 2>/dev/null | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$$1 > 1048576')"; \
	if [ -n "$$big" ]; then echo "tracked files over 1 MiB (build into bin/, which is ignored):"; echo "$$big"; exit 1; fi

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# fuzz runs every native Go fuzz target briefly (the seed corpora under
# testdata/fuzz/ also run as plain tests in unit). FUZZ_TARGETS lists
# package:target:executions; each budget is roughly 10 s here. Budgets are
# execution counts, not -fuzztime durations: Go 1.26's coordinator can
# report a spurious "context deadline exceeded" at the end of a duration
# (golang/go#75804, fixed in Go 1.27). -fuzzminimizetime is bounded because
# minimizing every new input for the default 60 s stalls a short run.
FUZZ_TARGETS := \
	./sim:FuzzDecodeApply:20000 \
	./modes/agent:FuzzDecodeState:50000 \
	./modes/iptrestore/ruleset:FuzzParse:100000 \
	./modes/iptrestore/ruleset:FuzzSplit:300000 \
	./modes/iptables/tracer:FuzzTrace:100000 \
	./modes/nftables:FuzzParseDump:50000 \
	./modes/ipvs/ipset:FuzzRestoreSave:100000 \
	./addons/ingress/nginxconf:FuzzRender:3000 \
	./addons/gateway:FuzzRender:3000 \
	./modes/rulediff:FuzzNormalise:8000
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  IFS=: read -r pkg name n <<<"$$t"; echo "fuzz $$name ($$pkg), $$n inputs"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $${n}x -fuzzminimizetime 200x -parallel 2 $$pkg || exit 1; \
	done

# actionlint lints the GitHub workflow, so a broken ci.yml fails here
# rather than on GitHub. It is built from the Go module proxy at a pinned
# version; `go run pkg@version` ignores this module's go.mod, so it works
# under CI's -mod=readonly and adds no dependency to go.mod.
ACTIONLINT := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
actionlint:
	$(GO) run $(ACTIONLINT) -color=false .github/workflows/ci.yml

# unit runs the tests that need no root: every package but the scenarios
# (listed by the recipe's shell, so a new package is never left out).
UNIT_PKGS = $$($(GO) list ./... | grep -v /scenarios)
unit:
	$(GO) test $(UNIT_PKGS)

# unit-unprivileged runs the root-free tests as an unprivileged user, the way
# GitHub's unit job does, so a test that quietly needs a capability fails here
# too. Run as root, the binaries are compiled as root and executed as nobody
# (setpriv drops every capability at exec); their root-only tests skip and say
# so. Results go to a temporary directory, not $(RESULTS).
NOBODY := setpriv --reuid=65534 --regid=65534 --clear-groups --
unit-unprivileged:
	@if [ "$$(id -u)" != 0 ]; then exec env -u SVCSIM_RESULTS_DIR $(GO) test -count=1 $(UNIT_PKGS); fi; \
	$(NOBODY) test -r $(CURDIR)/go.mod || { echo "unit-unprivileged: user nobody cannot read $(CURDIR); clone the repository where every user can read it"; exit 1; }; \
	echo "root-free tests as user nobody:"; \
	env -u SVCSIM_RESULTS_DIR TMPDIR=/tmp $(GO) test -count=1 -exec '$(NOBODY)' $(UNIT_PKGS)

# scenarios runs every scenario on every datapath this kernel offers (root).
scenarios: build
	$(GO) test -count=1 -timeout 40m ./scenarios/...

# test is the README's test command: the root-free tests as an unprivileged
# user, then everything as root. Datapaths the host kernel lacks (IPVS) run in
# the kernel lane.
# The scenarios run alone on the embedded plane with svcsim's datapaths,
# then again on the kubernetes plane with the kube-proxy datapaths and
# svcsim's nftables over a subset (kube-scenarios KUBE_SET=test; KUBE=0
# leaves them out, saying so) while the kernel lane
# runs its datapaths under qemu: both legs mostly wait (pods starting,
# kube-proxy programming, emulated guests), and side by side they take
# little longer than the longer one. Their figures are measured with the
# other leg running; the embedded leg's are measured alone.
# Under make test a missing bin/k8s fails the tests that need it instead of
# skipping them. It ends with the scenario x datapath table of every lane's
# results and writes $(RESULTS)/junit.xml (svcsim results), also when a test
# failed, and with a leak check of the whole suite (svcsim leaks: what dead
# runs left, beyond what was there when it started); the exit status is the
# tests'.
test: export SVCSIM_K8S_BIN := $(KUBE_BIN)
test: deps size-check fmt-check tidy-check vet actionlint kube build clean-results
	$(BIN) leaks --save bin/leaks-baseline.txt
	$(MAKE) --no-print-directory unit-unprivileged
	$(MAKE) --no-print-directory fuzz
	@status=0; \
	echo "$(GO) test -count=1 -timeout 20m <every package but the scenarios>  (as root)"; \
	$(GO) test -count=1 -timeout 20m $(UNIT_PKGS) || status=1; \
	echo "$(GO) test -count=1 -timeout 45m ./scenarios/...  (alone: nothing else loads the machine while it measures)"; \
	$(GO) test -count=1 -timeout 45m ./scenarios/... || status=1; \
	lane="$$($(LANE_MODES))" || status=1; \
	if [ -n "$$lane" ]; then \
	  echo "kernel lane for $$lane (the host kernel cannot run it; alone: the emulated guest starves beside the kubernetes planes)"; \
	  { $(MAKE) --no-print-directory vm-test VM_MODES="$$lane" && $(MAKE) --no-print-directory vm-selftest; } || status=1; \
	fi; \
	if [ "$(KUBE)" = 0 ]; then echo "KUBE=0: the kubernetes plane's scenarios are left out"; \
	else echo "kubernetes plane scenarios"; \
	  $(MAKE) --no-print-directory kube-scenarios KUBE_SET=test || status=1; fi; \
	echo "== scenarios x datapaths ($(RESULTS))"; \
	$(BIN) results -i $(RESULTS) --junit $(RESULTS)/junit.xml || status=1; \
	echo "== leftovers of the whole suite (svcsim leaks: dead runs' namespaces, processes, mounts, run dirs, logs)"; \
	$(BIN) leaks --baseline bin/leaks-baseline.txt || status=1; \
	exit $$status

# kube-scenarios runs the scenarios on the kubernetes plane (the genuine
# control plane) with each of its datapaths this host runs, as their
# descriptors say (none fails): kube-proxy's and svcsim's own node proxy fed
# from the API server, as KUBE_SET picks (above), and says how long it
# took (root; bin/k8s). Each datapath gets a plane of its own, one control
# plane for all its scenarios, and up to KUBE_PARALLEL datapaths run side
# by side: the scenarios mostly wait for the plane (pods starting,
# Services programmed), so planes in parallel take little longer than one,
# and no scenario switches a shared plane's datapath. Their figures are
# therefore measured with the other planes running; the bench (svcsim
# bench --kubernetes) measures alone. Each datapath's output goes to
# $(RESULTS)/<datapath>.log ("kube-proxy-nftables.log",
# "nftables@kubernetes.log"), printed once all ended.
# GATEWAY_CONFORMANCE_MODE is the kube-proxy datapath whose kube-scenarios
# run also runs the upstream Gateway API conformance suite (about a minute;
# one datapath is enough: the suite tests the Gateway controller, not the proxy).
GATEWAY_CONFORMANCE_MODE ?= kube-proxy/nftables

kube-scenarios: export SVCSIM_K8S_BIN := $(KUBE_BIN)
kube-scenarios: kube build
	@kube="$$($(KUBE_MODES) | tr , '\n' | grep -E '$(KUBE_MODES_MATCH)' | paste -sd, -)"; \
	if [ -z "$$kube" ]; then echo "no datapath runs on the kubernetes plane here ($(BIN) datapaths --plane kubernetes says why)"; exit 1; fi; \
	case "$(KUBE_SET)" in all|test) ;; *) echo "KUBE_SET=$(KUBE_SET): want all or test"; exit 1;; esac; \
	mkdir -p bin $(RESULTS) && $(GO) test -c -o bin/kube-scenarios.test ./scenarios || exit 1; \
	echo "kubernetes plane scenarios ($(KUBE_SET)), up to $(KUBE_PARALLEL) side by side: $$kube"; \
	begin=$$(date +%s); declare -A names; status=0; running=0; \
	finish() { local pid; wait -n -p pid; local rc=$$?; local m="$${names[$$pid]}"; local log="$(RESULTS)/$$(echo $$m | tr / -).log"; \
	  if [ $$rc = 0 ]; then echo "== $$m: ok ($$(( $$(date +%s) - begin )) s)"; else status=1; echo "== $$m: FAIL ($$log)"; cat "$$log"; fi; \
	  running=$$((running - 1)); }; \
	for m in $$(echo "$$kube" | tr , ' '); do \
	  run=""; \
	  case "$$m" in kube-proxy/*) ;; *) if [ "$(KUBE_SET)" = test ]; then \
	    if [ "$$m" != "$(KUBE_TEST_OWN)" ]; then continue; fi; run='^($(KUBE_TEST_SUBSET))$$'; fi;; esac; \
	  while [ $$running -ge $(KUBE_PARALLEL) ]; do finish; done; \
	  log="$(RESULTS)/$$(echo $$m | tr / -).log"; \
	  echo "== $$m: $${run:-every scenario}"; \
	  conf=$${SVCSIM_GATEWAY_CONFORMANCE:-0}; if [ "$$m" = $(GATEWAY_CONFORMANCE_MODE) ]; then conf=1; fi; \
	  (cd scenarios && SVCSIM_MODES="$$m" SVCSIM_GATEWAY_CONFORMANCE=$$conf exec ../bin/kube-scenarios.test -test.count=1 -test.timeout 60m $${run:+-test.run "$$run"}) > "$$log" 2>&1 & \
	  names[$$!]="$$m"; running=$$((running + 1)); \
	done; \
	while [ $$running -gt 0 ]; do finish; done; \
	echo "kubernetes plane scenarios: $$(( $$(date +%s) - begin )) s"; exit $$status

# test-kube-proxy runs every scenario on the kube-proxy datapaths with the
# build of a local kubernetes tree (root): `sudo make test-kube-proxy
# KUBERNETES_SRC=/path/to/kubernetes` (kube-scenarios with bin/k8s-local).
test-kube-proxy:
	@if [ -z "$(KUBERNETES_SRC)" ]; then echo "test-kube-proxy: KUBERNETES_SRC=/path/to/kubernetes wanted"; exit 1; fi
	$(MAKE) --no-print-directory kube-scenarios KUBE_MODES_MATCH='^kube-proxy/'

# kube-proxy-diff shows what the kube-proxy of KUBERNETES_SRC programs
# differently from the pinned release's for the seed's objects, on every
# kube-proxy datapath of bin/k8s (root; builds both binaries when needed).
kube-proxy-diff: build
	@if [ -z "$(KUBERNETES_SRC)" ]; then echo "kube-proxy-diff: KUBERNETES_SRC=/path/to/kubernetes wanted"; exit 1; fi
	$(MAKE) --no-print-directory kube KUBERNETES_SRC=
	$(MAKE) --no-print-directory kube
	$(BIN) kube-proxy-diff --base $(KUBE_PINNED) --with $(KUBE_LOCAL) -f sim/testdata/seed

# test-kube-loop is the developer loop's own test (root, opt-in: a second
# build of the multi-call binary, minutes and ~3 GB): the pinned module
# copied from the module cache into a temporary tree, a rule comment of
# kube-proxy's iptables proxier changed there, built with
# upstream/local-build.sh, and the change seen by kube-proxy-diff.
test-kube-loop: export SVCSIM_K8S_BIN := $(KUBE_PINNED)
test-kube-loop: $(KUBE_PINNED)
	SVCSIM_KUBE_LOOP=1 $(GO) test -count=1 -timeout 40m -run '^TestKubeProxyPatchLoop$$' -v ./cmd/svcsim

vm-build:
	@mkdir -p bin
	$(GO) test -c -o bin/scenarios.test ./scenarios
	CGO_ENABLED=0 $(GO) build -o bin/vmtest ./cmd/vmtest

# vm-selftest boots guests to prove the kernel lane reports pass, fail, crash
# and timeout faithfully: a failing test inside must fail outside (~2 min).
vm-selftest:
	SVCSIM_VMTEST=1 SVCSIM_VMTEST_KERNEL=$(KERNEL) $(GO) test -count=1 -timeout 15m -run TestVM -v ./kernellane/

# vm-test runs the scenario suite (every datapath, or VM_MODES) inside the
# Debian kernel KERNEL booted under qemu; its exit status is the suite's.
vm-test: vm-build
	bin/vmtest --kernel $(KERNEL) --share $(CURDIR) --timeout 45m \
	  --env SVCSIM_LANE=vm:debian-$(KERNEL) --env SVCSIM_RESULTS_DIR=$(RESULTS) \
	  $(if $(VM_MODES),--env SVCSIM_MODES=$(VM_MODES)) \
	  -- $(CURDIR)/bin/scenarios.test -test.v -test.count=1 -test.timeout 40m

# demo is the README's main command: bring up the seed's cluster and show it
# working, run every scenario on every datapath (IPVS in the kernel lane when
# the host lacks it; kube-proxy's and svcsim's own on the kubernetes plane, every
# scenario each, unless KUBE=0) and
# the quick benchmark, then write the HTML report. The
# report is written even when a scenario fails; the exit status says so.
demo: export SVCSIM_K8S_BIN := $(KUBE_BIN)
demo: deps build kube clean-results
	@echo "== the seed's cluster, on the iptables datapath"
	set -e; trap '$(BIN) down' EXIT; \
	$(BIN) up -f sim/testdata/seed; \
	$(BIN) get pods -o wide; \
	$(BIN) get svc -o wide; \
	$(BIN) exec external -- curl -sS --max-time 3 http://198.18.0.11:30080/info; echo; \
	$(BIN) patch svc myhttp-v2-service -p '{"spec":{"sessionAffinity":"ClientIP"}}'; \
	$(BIN) exec external -- sh -c 'for i in 1 2 3 4 5; do curl -sS --max-time 3 http://198.18.0.11:30080/info; echo; done'
	@echo "== scenarios on every datapath"
	@status=0; \
	$(GO) test -count=1 -timeout 40m ./scenarios/... || status=1; \
	lane="$$($(LANE_MODES))" || status=1; \
	if [ -n "$$lane" ]; then $(MAKE) --no-print-directory vm-test VM_MODES="$$lane" || status=1; fi; \
	if [ "$(KUBE)" = 0 ]; then echo "KUBE=0: the kubernetes plane's scenarios are left out"; \
	else $(MAKE) --no-print-directory kube-scenarios || status=1; fi; \
	echo "== scenarios x datapaths"; \
	$(BIN) results -i $(RESULTS) --junit $(RESULTS)/junit.xml || status=1; \
	echo "== quick benchmark"; \
	$(BIN) bench --quick -o $(RESULTS) || status=1; \
	$(BIN) report -i $(RESULTS) -o $(RESULTS)/report.html || status=1; \
	echo "results: $(RESULTS)"; echo "report:  $(RESULTS)/report.html"; exit $$status

report: build
	$(BIN) report -i $(RESULTS) -o $(RESULTS)/report.html

# down removes a running simulation and the leftovers of killed runs.
down: build
	$(BIN) down

# clean-results empties the results directory so a report shows one run.
clean-results:
	@mkdir -p $(RESULTS)
	rm -f $(RESULTS)/scenario-*.json $(RESULTS)/bench-*.json $(RESULTS)/env-*.json $(RESULTS)/*.png $(RESULTS)/junit.xml

clean:
	rm -rf bin $(RESULTS)
