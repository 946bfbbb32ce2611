# polymur — see README.md. `make demo` and `make test` are all a fresh
# machine with Go needs.
GO      ?= go
BIN     ?= bin
CMDS    := $(notdir $(wildcard cmd/*))

# A real Consul agent for the tests, built from the Go module proxy through
# the nested module in tools/consul and cached outside the repository.
CONSUL_VERSION := 1.22.7
CONSUL_CACHE   ?= $(HOME)/.cache/polymur/consul-$(CONSUL_VERSION)
CONSUL         := $(CONSUL_CACHE)/consul

# Etsy's statsd (npm) for the statsd-mode tests and benchmark: real statsd
# daemons as backends and its proxy.js as the peer; cached outside the repo.
STATSD_VERSION := 0.9.0
STATSD_CACHE   ?= $(HOME)/.cache/polymur/statsd-$(STATSD_VERSION)
STATSD_DIR     := $(STATSD_CACHE)/node_modules/statsd

FUZZTIME ?= 30s

# staticcheck, pinned, run from the module proxy by `make check`.
STATICCHECK_VERSION := v0.8.2

.PHONY: all demo test faults check bench fuzz fuzz-smoke clean consul chromium statsd carbon-c-relay graphite-carbon package-tools release package FORCE

# The version the binaries report (-version, polymur_build_info): git
# describe, or the Go module's build info where there is no git.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/polymur/polymur/internal/daemon.linkVersion=$(VERSION) -X github.com/polymur/polymur/internal/daemon.linkRevision=$(REVISION)

all: $(CMDS:%=$(BIN)/%)

$(BIN)/%: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

# Static release binaries (no cgo: they run on distroless, Alpine, scratch)
# for linux/amd64 and linux/arm64 into dist/, with their SHA-256 sums; the
# other platforms the code builds on are checked.
RELEASE_PLATFORMS := linux/amd64 linux/arm64
CHECK_PLATFORMS   := darwin/amd64 darwin/arm64 windows/amd64 freebsd/amd64
release:
	@set -e; rm -rf dist; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=dist/polymur-$(VERSION)-$$os-$$arch; mkdir -p $$out; \
		echo "release $$os/$$arch -> $$out"; \
		for c in $(CMDS); do CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $$out/$$c ./cmd/$$c; done; \
		cp LICENSE README.md $$out/; \
	done; \
	for p in $(CHECK_PLATFORMS); do echo "build check $$p"; CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./... ; done; \
	cd dist && find . -type f -name 'polymur*' -o -type f -name pgw-key | sort | xargs sha256sum > SHA256SUMS

demo: all
	$(GO) run ./demo -bin $(BIN)

consul: $(CONSUL)

$(CONSUL):
	@echo "building Consul $(CONSUL_VERSION) for the tests (first time only, several minutes) into $(CONSUL_CACHE)"
	mkdir -p $(CONSUL_CACHE)
	$(GO) build -C tools/consul -trimpath -ldflags='-s -w' -o $(CONSUL) github.com/hashicorp/consul

statsd: $(STATSD_DIR)/stats.js

$(STATSD_DIR)/stats.js:
	@echo "installing statsd $(STATSD_VERSION) from npm into $(STATSD_CACHE) (first time only)"
	mkdir -p $(STATSD_CACHE)
	cd $(STATSD_CACHE) && npm install --no-audit --no-fund --loglevel=error statsd@$(STATSD_VERSION)

# Headless Chromium renders the status page in the admin tests: Debian's
# chromium package, installed when missing (root, or through sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the status-page tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The routing tests compare polymur with the real carbon-c-relay (its -t
# trace): Debian's package, installed when missing.
carbon-c-relay:
	@command -v carbon-c-relay >/dev/null 2>&1 || { \
		echo "installing Debian's carbon-c-relay for the routing differential tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq carbon-c-relay >/dev/null; }

# The protocol tests run real Python carbon (carbon-relay, carbon-cache)
# and read what it stored with whisper-fetch.
graphite-carbon:
	@{ command -v carbon-cache && command -v whisper-fetch; } >/dev/null 2>&1 || { \
		echo "installing Debian's graphite-carbon and python3-whisper for the pickle tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphite-carbon python3-whisper >/dev/null; }

# The package test checks the .deb with lintian and lists the .rpm with rpm.
package-tools:
	@{ command -v lintian && command -v rpm; } >/dev/null 2>&1 || { \
		echo "installing Debian's lintian and rpm for the package test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq lintian rpm >/dev/null; }

# The fault suite (./faults) runs with the rest; its parallel cases mostly
# wait on outages, hence -parallel 4 on two cores.
test: consul chromium statsd carbon-c-relay graphite-carbon package-tools
	POLYMUR_CONSUL_BIN=$(CONSUL) POLYMUR_STATSD_DIR=$(STATSD_DIR) $(GO) test -race -count=1 -parallel 4 ./...
	$(MAKE) --no-print-directory fuzz-smoke FUZZTIME=10000x

# Only the fault suite, verbose: outages, slow destinations, SIGTERM and
# restart, gateway trouble, Consul restart, 10,000 connections, hostile input.
faults: consul
	POLYMUR_CONSUL_BIN=$(CONSUL) POLYMUR_STATSD_DIR=$(STATSD_DIR) $(GO) test -count=1 -parallel 4 -v ./faults

check:
	@out=$$(gofmt -l . | grep -v '^tools/'); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(MAKE) --no-print-directory test

# Every fuzz target, FUZZTIME each. The smoke run in `make test` counts
# executions (10000x) rather than seconds: a duration races Go's fuzzing
# coordinator at its deadline on a loaded machine ("context deadline
# exceeded" with no failing input).
FUZZ_TARGETS := batch:FuzzParse batch:FuzzParseStatsd route:FuzzParse batch:FuzzSplitter batch:FuzzPlainScan dest:FuzzRing decode:FuzzPickle decode:FuzzTransports batch:FuzzNormalizeTags route:FuzzParseMember statsd:FuzzJSObjectToJSON api:FuzzDispatch listener:FuzzIngest listener:FuzzIngestZstd spool:FuzzSegment aggregate:FuzzPut ring:FuzzCachedPosition
fuzz-smoke fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) >/tmp/polymur-fuzz.log 2>&1 || { cat /tmp/polymur-fuzz.log; exit 1; }; \
		tail -n 1 /tmp/polymur-fuzz.log; \
	done

# Go micro-benchmarks, then the side-by-side harness (polymur vs
# carbon-c-relay, proxy → gateway, idle connections; results in
# bench/results/latest.md). LINES=5000000 for longer runs.
LINES ?= 1000000
bench: all
	$(GO) test -run '^$$' -bench . -benchmem ./batch ./dest ./route ./ring ./internal/daemon ./decode ./aggregate
	$(GO) run ./bench -bin $(BIN) -lines $(LINES)

# A .deb and an .rpm of the linux/amd64 release (binaries, systemd units,
# /etc/default files, man pages made from -h, a sample configuration),
# built by nfpm run as a Go tool.
NFPM_VERSION   := v2.45.2
PKG_VERSION    ?= $(shell echo "$(VERSION)" | sed -e 's/^v//' -e 's/^\([0-9a-f]\{7,\}\)/0.0.0+\1/' -e 's/-dirty$$/+dirty/')
PKG_MAINTAINER ?= polymur developers <polymur@users.noreply.github.com>
PKG_DATE       := $(shell date -u -R -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)})
package:
	rm -rf dist/stage dist/pkg && mkdir -p dist/stage dist/pkg
	for c in $(CMDS); do CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o dist/stage/$$c ./cmd/$$c; done
	for c in $(CMDS); do $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/stage/host/$$c ./cmd/$$c; done
	$(GO) run ./contrib/genman -bin dist/stage/host -out dist/stage/man -version $(PKG_VERSION)
	printf 'polymur (%s) unstable; urgency=medium\n\n  * Release %s; see README.md.\n\n -- %s  %s\n' \
		'$(PKG_VERSION)' '$(VERSION)' '$(PKG_MAINTAINER)' '$(PKG_DATE)' | gzip -9n > dist/stage/changelog.gz
	for p in deb rpm; do GOARCH=amd64 PKG_VERSION=$(PKG_VERSION) PKG_MAINTAINER='$(PKG_MAINTAINER)' \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package -f contrib/nfpm.yaml -p $$p -t dist/pkg/; done

clean:
	rm -rf $(BIN) dist
