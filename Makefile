.DEFAULT_GOAL := help
.PHONY: help up chromium run build test test/topologies bench fuzz lint screenshots loadtest k6

GO ?= go

help: ## Print this message
	@awk -F ':.*## ' '/^[a-z0-9\/]+:.*## / {printf "%-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## Start Postgres and Redis if they are not running (installs them from apt when missing)
	./scripts/services-up.sh

chromium: ## Install Debian's Chromium for the browser tests when it is missing
	./scripts/chromium-up.sh

run: ## Start a dev server on localhost:8080: local Postgres/Redis if they answer, else embedded ones (state in .switchboard/)
	$(GO) run ./cmd/switchboard dev

build: ## Build bin/switchboard
	$(GO) build -o bin/switchboard ./cmd/switchboard

test: up chromium ## Run every test with the race detector against the real Postgres, Redis and a headless Chromium, then the Redis users' tests again on a Redis Cluster and on Sentinel
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) test/topologies

# The packages that keep state in Redis or run several nodes, run again on
# each Redis topology of SPEC §15 (scripts/redis-topologies.sh); tests that
# need one server behind a proxy skip there, and the browser tests are not
# repeated.
TOPOLOGY_PACKAGES = ./cmd/switchboard ./presence ./ratelimit ./denylist ./cache ./history ./integrations/... ./web ./hub
TOPOLOGY_SKIP = TestBrowser|TestScreenshots|TestDev
CLUSTER_ENV = TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005
SENTINEL_ENV = TEST_REDIS_SENTINEL_ADDRS=127.0.0.1:26390,127.0.0.1:26391,127.0.0.1:26392 TEST_REDIS_SENTINEL_MASTER=switchboard

test/topologies: up ## Run the Redis users' tests on a local Redis Cluster and on Sentinel (started if needed)
	./scripts/redis-topologies.sh up
	$(CLUSTER_ENV) $(GO) test -race -count=1 -timeout 15m -skip '$(TOPOLOGY_SKIP)' $(TOPOLOGY_PACKAGES)
	$(SENTINEL_ENV) $(GO) test -race -count=1 -timeout 15m -skip '$(TOPOLOGY_SKIP)' $(TOPOLOGY_PACKAGES)

bench: up ## Run the benchmarks only
	$(GO) test -run='^$$' -bench=. -benchmem ./...

screenshots: up chromium ## Save screenshots of the browser client to docs/screenshots/
	SWITCHBOARD_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestScreenshots$$' ./cmd/switchboard

loadtest: up ## Fresh servers: every load scenario short (open loop, limits on; closed loop for comparison) and a write-rate sweep; report and SVGs in docs/performance/
	$(GO) build -o bin/switchboard ./cmd/switchboard
	$(GO) build -o bin/loadtest ./loadtest
	./bin/loadtest -scenario suite -server bin/switchboard -out docs/performance -profiles .switchboard/profiles -logs .switchboard/logs $(LOADTEST_FLAGS)

K6_VERSION ?= v1.8.1

k6: up ## Cross-check fanout with k6 (loadtest/k6/fanout.js) on a fresh server; SUBS=, DURATION_S=, INTERVAL_MS= size it
	$(GO) build -o bin/switchboard ./cmd/switchboard
	test -x bin/k6 || GOBIN=$(CURDIR)/bin $(GO) install go.k6.io/k6@$(K6_VERSION)
	PATH=$(CURDIR)/bin:$$PATH ./loadtest/k6/run.sh

fuzz: ## Fuzz the WebSocket frame decoder for 30 s
	$(GO) test -run='^$$' -fuzz=FuzzDecodeFrame -fuzztime=30s ./hub

lint: ## gofmt, go vet, and the import rules between our packages (internal/archtest)
	@test -z "$$(gofmt -l .)" || (echo "gofmt would change:" && gofmt -l . && exit 1)
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/archtest

.PHONY: redis/up redis/status redis/down

redis/up: ## Start a Redis Cluster (7000-7005) and a Sentinel setup (6390-6391, 26390-26392) on loopback
	./scripts/redis-topologies.sh up

redis/status: ## Say which parts of the Redis Cluster and Sentinel setup run
	./scripts/redis-topologies.sh status

redis/down: ## Stop the Redis Cluster and Sentinel setup and delete their files
	./scripts/redis-topologies.sh down
