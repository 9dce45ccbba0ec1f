# Alicia — build, run and test. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export CGO_ENABLED := 0
GO      ?= go
PKG     := github.com/alicia-home/alicia
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X $(PKG)/internal/buildinfo.Version=$(VERSION) \
           -X $(PKG)/internal/buildinfo.Commit=$(COMMIT) -X $(PKG)/internal/buildinfo.Date=$(DATE)
GOBUILD := $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# Fuzzing budgets are counts, not durations: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a -fuzztime duration
# ends (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline.
FUZZTIME ?= 30000x
FUZZMIN  ?= 100x

# Cross targets: os-arch[-variant]. The hub needs a 64-bit platform (badger).
HUB_TARGETS   := linux-amd64 linux-arm64 linux-riscv64
AGENT_TARGETS := $(HUB_TARGETS) linux-armv7 linux-armv6 linux-386

.PHONY: help build cross run test test-unit bench lint clean package release

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build alicia-hub and alicia-agent for this machine into bin/
	$(GOBUILD) -o bin/alicia-hub ./hub
	$(GOBUILD) -o bin/alicia-agent ./agent

cross: ## build both binaries for every target into bin/<os>-<arch>/ (agent also for armv7, armv6, 386)
	@set -e; for t in $(AGENT_TARGETS); do \
	  os=$${t%%-*}; arch=$${t#*-}; goarm=; \
	  case $$arch in armv7) arch=arm; goarm=7;; armv6) arch=arm; goarm=6;; esac; \
	  echo "agent $$t"; GOOS=$$os GOARCH=$$arch GOARM=$$goarm $(GOBUILD) -o bin/$$t/alicia-agent ./agent; \
	done
	@set -e; for t in $(HUB_TARGETS); do \
	  os=$${t%%-*}; arch=$${t#*-}; \
	  echo "hub   $$t"; GOOS=$$os GOARCH=$$arch $(GOBUILD) -o bin/$$t/alicia-hub ./hub; \
	done

package: ## build the .deb and .rpm packages of both for every target into dist/ (nfpm)
	@scripts/package.sh dist '$(VERSION)' '$(LDFLAGS)'

release: ## dist/: every binary, every package, install.sh and SHA256SUMS
	@rm -rf dist && scripts/package.sh dist '$(VERSION)' '$(LDFLAGS)' --binaries

run: build ## run the hub (data in .run/) and one local agent; prints the REST URL and a curl
	@scripts/run.sh

test: lint ## run every test: unit (-race), end-to-end, Mosquitto, namespaces LAN, qemu, brief fuzzing
	@# The race detector needs cgo in the test binaries; everything shipped is built with CGO_ENABLED=0.
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...
	@# Brief fuzzing of the parsers that take input from the network, a
	@# file or an administrator (a short minimisation keeps each one brief).
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./internal/protocol
	$(GO) test -run '^$$' -fuzz '^FuzzParseDeviceTopic$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./internal/protocol
	$(GO) test -run '^$$' -fuzz '^FuzzEnroll$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./hub/api
	$(GO) test -run '^$$' -fuzz '^FuzzStrictBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./hub/api
	$(GO) test -run '^$$' -fuzz '^FuzzStrictJobBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./hub/api
	$(GO) test -run '^$$' -fuzz '^FuzzTemplate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./hub/spec
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./agent/board
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./agent/textfile
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRule$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./hub/health
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./internal/schedule

test-unit: ## run only the fast unit tests (-short)
	$(GO) test -short -count=1 ./...

bench: ## run the benchmarks and print their figures (as root: uses network namespaces)
	$(GO) test -run '^$$' -bench . -skip '^Benchmark(AgentFootprint|HubIngest|CommandRoundTrip|HubHousehold)$$' -benchtime 7x ./internal/e2e
	@# Their body is one measured run (about 2 min; sizes in docs/benchmarks.md): run once.
	$(GO) test -run '^$$' -bench '^Benchmark(AgentFootprint|HubIngest|CommandRoundTrip|HubHousehold)$$' -benchtime 1x -timeout 15m ./internal/e2e

lint: ## gofmt and go vet
	@# gofmt -l with no file arguments would read stdin and pass: name the source trees.
	@out=$$(gofmt -l agent hub hal internal) || exit 1; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove bin/, dist/ and the make-run data in .run/
	rm -rf bin dist .run
