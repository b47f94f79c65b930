# pinhole — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/pinhole
CONFIG  ?=
FUZZTIME ?= 30s
# VERSION is what `pinhole version` prints; the commit and Go version come
# from the binary's own build information.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Every package that has fuzz targets; `make fuzz` runs each target for FUZZTIME.
FUZZPKGS := $(shell grep -rl --include='*_test.go' '^func Fuzz' . 2>/dev/null | xargs -r -n1 dirname | sort -u)

.PHONY: run build test test-unit test-memory test-bpf test-integration test-bench-smoke generate check-generated bench bench-docs bench-go fuzz lint clean deps-run deps-test

run: deps-run build
	./$(BIN) $(if $(CONFIG),-config $(CONFIG))

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/pinhole

deps-run:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test bpf

# test runs everything CI runs: vet, unit tests with the race detector, the
# BPF programs in the kernel, the committed BPF objects' freshness, and the
# integration tests against real peers in network namespaces.
test: deps-test lint test-unit test-memory check-generated test-integration test-bench-smoke

test-unit:
	$(GO) test -race -count=1 ./...

# test-memory runs the heap budgets per binding, per credentialed user and
# the fast path's per AOR without the race detector, which changes heap
# sizes (the tests skip themselves under -race); a few seconds.
test-memory:
	$(GO) test -count=1 -run 'TestMemoryPerBinding|TestCredentialsMemoryPerUser|TestMemoryPerAOR' ./internal/location/ ./internal/digest/ ./fastpath/absorb/

check-generated:
	@if [ -x bpf/check-generated.sh ]; then bpf/check-generated.sh; fi
	@if [ -x bench/xdp/check-generated.sh ]; then bench/xdp/check-generated.sh; fi

test-integration: build
	$(GO) test -race -count=1 -tags integration -timeout 16m ./internal/e2e/... ./internal/testutil/... ./internal/location/...
	$(GO) test -race -count=1 -tags integration -run 'TestVeth' -timeout 5m ./fastpath/

generate:
	$(GO) generate ./bpf/... ./bench/xdp/bare

# bench runs the default side-by-side comparison (bench/compare.sh: the
# generator's ceiling, echo, pinhole's slow and fast paths, Kamailio,
# OpenSIPS if installed; veth between two namespaces) in about 15 minutes;
# docs/benchmarks.md has the settings. bench-docs rewrites the generated
# part of docs/benchmarks.md from bench/out. bench-go runs the Go benchmarks.
bench: deps-test
	bench/compare.sh

bench-docs:
	$(GO) run ./bench/cmd/benchtable -docs bench/out docs/benchmarks.md

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# test-bench-smoke runs every load-generator scenario briefly against pinhole
# (register, refresh and the avalanche with pinhole's own counts checked,
# and the avalanche's retries), the batched and the per-device-socket
# generator against the echo responder, and the batched one across a veth
# pair between two namespaces (seconds; nothing timed).
test-bench-smoke:
	$(GO) test -race -count=1 -tags integration -run Smoke -timeout 5m ./bench/load/

fuzz:
	@for pkg in $(FUZZPKGS); do \
	  for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./internal/...

clean:
	rm -rf bin pinhole-data
