# Strata — build, run and test. `make run` and `make test` work on a fresh
# Debian 12 machine as root: they install what is missing first.

SHELL       := /bin/bash
GO          ?= go
BIN         := bin/strata
DATA_DIR    ?= /var/lib/strata
K8S_VERSION := v1.37.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# kubectl refuses a server whose version it cannot parse, so the embedded
# component-base and client-go versions are set to the upstream release.
LDFLAGS := \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37 \
	-X github.com/strata-cloud/strata/internal/version.Version=$(VERSION) \
	-X github.com/strata-cloud/strata/internal/version.GitCommit=$(COMMIT)

# One static binary. CGO stays off everywhere (tests included) so that every
# build shares one Go build cache: a cold build of the embedded Kubernetes
# takes 6-9 minutes, a relink ~15 s.
export CGO_ENABLED := 0

.PHONY: all build run test test-unit test-e2e test-vm-image bench deps lint clean-data

all: build

deps:
	@hack/install-deps.sh

HELPERS := internal/agent/helperbin/payload

# The small helpers (runc shim, CNI plugin, VM launcher) are built first and
# embedded in strata: see internal/agent/helperbin.
build:
	$(GO) build -trimpath -ldflags '-s -w' -o $(HELPERS)/containerd-shim-runc-v2 ./cmd/strata-shim
	$(GO) build -trimpath -ldflags '-s -w' -o $(HELPERS)/strata-cni ./cmd/strata-cni
	$(GO) build -trimpath -ldflags '-s -w' -o $(HELPERS)/strata-launcher ./cmd/strata-launcher
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/strata

run: deps build
	@echo "Starting Strata (data in $(DATA_DIR)); Ctrl-C stops it."
	./$(BIN) server --data-dir $(DATA_DIR)

# The e2e tests' bootable VM disk, for trying VMs by hand.
test-vm-image: deps
	$(GO) run ./hack/testvmimage -o bin/testvm.img

# Unit tests cover every package that does not link the Kubernetes tree;
# e2e tests drive bin/strata as a real process with the real kubectl.
test: deps build test-unit test-e2e

test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /bench)

test-e2e: build
	STRATA_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m -v ./test/e2e/... 2>&1 | tee /tmp/strata-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

bench: deps build
	$(GO) run ./bench/startup -bin $(BIN)
	$(GO) run ./bench/api -bin $(BIN)
	$(GO) run ./bench/pods -bin $(BIN)
	$(GO) run ./bench/vm -bin $(BIN)
	$(GO) run ./bench/volume -bin $(BIN)
	$(GO) run ./bench/vmmigrate -bin $(BIN)
	$(GO) run ./bench/netperf
	$(GO) run ./bench/netpol
	$(GO) run ./bench/secgroup
	$(GO) run ./bench/router
	$(GO) run ./bench/tenantport -bin $(BIN)
	$(GO) run ./bench/keystone -bin $(BIN)
	$(GO) run ./bench/openstack -bin $(BIN)
	$(GO) run ./bench/objstore

-include mk/generate.mk
