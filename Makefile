# svcsim: see README.md. Every target that needs root says so; run with sudo.
SHELL      := /bin/bash
GO         ?= go
RESULTS    ?= $(CURDIR)/results
BIN        := $(CURDIR)/bin/svcsim
export SVCSIM_RESULTS_DIR := $(RESULTS)

# Debian/Ubuntu packages the suite uses; `make deps` installs the missing ones.
PKGS := iproute2 iptables nftables ipset ipvsadm conntrack curl dnsutils procps psmisc chromium

.PHONY: all build deps test unit scenarios demo report clean down vet fmt-check

all: build

build:
	$(GO) build -o $(BIN) ./cmd/svcsim

# deps installs missing system packages (only those missing) and Go modules.
deps:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "system packages: all present"; fi
	$(GO) mod download

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# unit runs the tests that need no root.
unit:
	$(GO) test ./sim/... ./modes/... ./report/... ./internal/...

# scenarios runs every scenario on every datapath this kernel offers (root).
scenarios: build
	$(GO) test -count=1 -timeout 40m ./scenarios/...

# test is the README's test command: everything, as root.
test: deps fmt-check vet
	$(GO) test -count=1 -timeout 45m ./...

# demo is the README's main command: bring up the seed's cluster, run the
# scenarios, write the results and the report, and print where they are.
demo: deps build
	@mkdir -p $(RESULTS)
	$(BIN) down >/dev/null 2>&1 || true
	$(BIN) up -f sim/testdata/seed
	$(BIN) get pods -o wide
	$(BIN) get svc -o wide
	$(BIN) exec external -- curl -sS --max-time 3 http://198.18.0.11:30080/info; echo
	$(BIN) down
	$(GO) test -count=1 -timeout 40m ./scenarios/... || true
	$(BIN) report -i $(RESULTS) -o $(RESULTS)/report.html
	@echo "results: $(RESULTS)"; echo "report:  $(RESULTS)/report.html"

report: build
	$(BIN) report -i $(RESULTS) -o $(RESULTS)/report.html

# down removes a running simulation and the leftovers of killed runs.
down: build
	$(BIN) down

clean:
	rm -rf bin $(RESULTS)
