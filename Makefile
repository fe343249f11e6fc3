# rumor's make targets. `make help` lists them.
GO       ?= go
BIN      ?= bin/rumor
FUZZTIME ?= 30s
BASE     ?= HEAD~1
RACE_PKGS = ./store/... ./wire/... ./node/... ./gossip/... ./internal/...
PURE_PKGS = ./ring/...

.PHONY: help build cluster cluster-down node test lint unit e2e bench bench-cluster ab bench-faults bench-go bench-deps pgo fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/rumor
	$(GO) build -o $(BIN) ./cmd/rumor

cluster: build ## build and start a 3-node local cluster in the background (ports 7001-7003; bin/rumor cluster status|kill|start|down)
	./$(BIN) cluster up --nodes 3 --dir ./.rumor-cluster --base-port 7001

cluster-down: ## stop the local cluster
	./$(BIN) cluster down --dir ./.rumor-cluster

node: build ## build and run one node in the foreground (RESP on :7379, HTTP on :7380, data in ./.rumor-data)
	./$(BIN) node --name local --data-dir ./.rumor-data

test: lint unit e2e ## everything CI runs: gofmt, go vet, unit tests with -race, end-to-end tests

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit: ## unit, property and fuzz-seed tests; the race detector on the packages with concurrency
	$(GO) test -count=1 ./crdt/... -rapid.checks=2000
	$(GO) test -count=1 $(PURE_PKGS)
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 -run 'Allocate' $(RACE_PKGS) # allocation counts, which -race's instrumentation changes

e2e: ## end-to-end tests: the real binary driven by go-redis, raw bytes, HTTP and SIGKILL
	$(GO) test -count=1 ./cmd/...

bench: build ## rumor against redis-server with redis-benchmark, plus memory for 1M keys (needs: make bench-deps)
	scripts/bench.sh

bench-cluster: build ## a 3-node cluster (N=3, R=2, W=2) against redis-server with redis-benchmark (needs: make bench-deps)
	scripts/bench-cluster.sh

ab: build ## compare this tree's build with BASE (default HEAD~1) on one node or a cluster, in alternating rounds (NODES=3: a 3-node cluster; ROUNDS, SYNC, TESTS, N, C, R, PROCS, OLD_ARGS, NEW_ARGS, OLD_ENV, NEW_ENV; needs: make bench-deps)
	BASE=$(BASE) scripts/ab.sh

bench-faults: ## 5 processes under partition, heal, kill and restart: lost writes, hint drain time, throughput during the partition
	@out=$$(mktemp); go test -count=1 -run TestFaultsKeepEveryAcknowledgedWrite -v ./cmd/rumor > $$out 2>&1; st=$$?; \
	grep -E 'faults_e2e_test|^(---|ok|FAIL)' $$out; rm -f $$out; exit $$st

bench-go: ## Go benchmarks: store writes and reads, RESP parsing, peer calls, placement, the coordinator in one process
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=2s ./store ./wire ./ring ./node

pgo: build ## regenerate cmd/rumor/default.pgo, the CPU profile go build optimizes the binary with: a node and a 3-node cluster under redis-benchmark (PROFILE_SECONDS; needs: make bench-deps)
	scripts/pgo.sh

bench-deps: ## install redis-server and redis-tools (Debian) for make bench
	command -v redis-benchmark >/dev/null || (apt-get update && apt-get install -y redis-server redis-tools)

fuzz: ## run every fuzz target for FUZZTIME (default 30s; 1000000x counts runs) each; fails on a failing input
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

clean: ## remove build output and the local node's and cluster's data
	rm -rf bin .rumor-data .rumor-cluster
