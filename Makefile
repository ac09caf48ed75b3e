.DEFAULT_GOAL := help
.PHONY: help up run build test test/short bench fuzz lint

GO ?= go

help: ## Print this message
	@awk -F ':.*## ' '/^[a-z\/]+:.*## / {printf "%-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## Start Postgres and Redis if they are not running (installs them from apt when missing)
	./scripts/services-up.sh

run: up ## Start a server on :8080 (creates and migrates the database)
	$(GO) run ./cmd/switchboard serve

build: ## Build bin/switchboard
	$(GO) build -o bin/switchboard ./cmd/switchboard

test: up ## Run every test with the race detector against the real Postgres and Redis
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

bench: up ## Run the benchmarks only
	$(GO) test -run='^$$' -bench=. -benchmem ./...

fuzz: ## Fuzz the WebSocket frame decoder for 30 s
	$(GO) test -run='^$$' -fuzz=FuzzDecodeFrame -fuzztime=30s ./hub

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	$(GO) vet ./...
