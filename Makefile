SHELL := /bin/bash
# segd: the two commands are `make run` and `make test`.

GO        ?= go
DATA_DIR  ?= segd-data
LISTEN    ?= 127.0.0.1:4222
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 10s

GO_PLUGINS := geofence scoring searchclass
PLUGIN_DIR := build/plugins
# Debian's toolchains, by path: a rustup rustc first on PATH may lack the
# wasm32-wasi target. Override for other systems (make plugins CARGO=cargo RUSTC=rustc).
CARGO     ?= /usr/bin/cargo
RUSTC     ?= /usr/bin/rustc
CLANG     ?= clang
RUST_PLUGINS := amount_rs scoring_rs tokens

.PHONY: run build plugins test lint fuzz bench clean

# run clears NATS_URL and NATS_CONTEXT: with either set, segd serve would
# use that server instead of embedding one.
# RULES adds rule files or directories (comma-separated) to the example
# rules; PLUGINS adds a directory of your own plugins (NAME.wasm and
# NAME.yaml), copied beside the example plugins; METRICS serves Prometheus
# metrics there (HOST:PORT). E.g.
#   make run RULES=my-rules.yaml PLUGINS=my-plugins METRICS=127.0.0.1:9464
RULES   ?=
PLUGINS ?=
METRICS ?=

## run: build segd and the example plugins, and start segd with an embedded NATS server, the example rules (plus RULES=), the plugins (plus PLUGINS=) and a demo stream
run: build plugins
	@rules="examples/rules,examples/plugins/rules.yaml"; \
	if [ -f $(PLUGIN_DIR)/amount.wasm ]; then rules="$$rules,examples/plugins/amount-wat/rules.yaml"; fi; \
	if [ -f $(PLUGIN_DIR)/tokens.wasm ]; then rules="$$rules,examples/plugins/rust-rules.yaml"; fi; \
	if [ -f $(PLUGIN_DIR)/amount_c.wasm ]; then rules="$$rules,examples/plugins/amount-c/rules.yaml"; fi; \
	if [ -n "$(RULES)" ]; then rules="$$rules,$(RULES)"; fi; \
	if [ -n "$(PLUGINS)" ]; then \
		if [ ! -d "$(PLUGINS)" ]; then echo "PLUGINS=$(PLUGINS) is not a directory"; exit 1; fi; \
		cp "$(PLUGINS)"/*.wasm $(PLUGIN_DIR)/ || exit 1; \
		for y in "$(PLUGINS)"/*.yaml; do [ -f "$$y" ] && cp "$$y" $(PLUGIN_DIR)/; done; \
	fi; \
	metrics=""; if [ -n "$(METRICS)" ]; then metrics="--metrics $(METRICS)"; fi; \
	set -x; NATS_URL= NATS_CONTEXT= exec ./bin/segd serve --data-dir $(DATA_DIR) --listen $(LISTEN) --rules "$$rules" --plugins $(PLUGIN_DIR) $$metrics --demo

## plugins: build the example WASM plugins into build/plugins: Go, and Rust, C and WebAssembly text where their toolchain is installed
plugins:
	@mkdir -p $(PLUGIN_DIR)
	@for p in $(GO_PLUGINS); do \
		echo "plugin $$p (Go)"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $(PLUGIN_DIR)/$$p.wasm ./examples/plugins/$$p || exit 1; \
		cp examples/plugins/$$p/$$p.yaml $(PLUGIN_DIR)/; \
	done
	@if [ -x "$$(command -v $(CARGO))" ] && [ -x "$$(command -v $(RUSTC))" ]; then \
		echo "plugins $(RUST_PLUGINS) (Rust)"; \
		(cd examples/plugins && RUSTC=$(RUSTC) CARGO_TARGET_DIR=$(CURDIR)/build/cargo $(CARGO) build --offline --release --target wasm32-wasi -q) || exit 1; \
		cp build/cargo/wasm32-wasi/release/amount_rs.wasm examples/plugins/amount-rs/amount_rs.yaml \
		   build/cargo/wasm32-wasi/release/scoring_rs.wasm examples/plugins/scoring-rs/scoring_rs.yaml \
		   build/cargo/wasm32-wasi/release/tokens.wasm examples/plugins/tokens-rs/tokens.yaml $(PLUGIN_DIR)/; \
	else echo "skipping the Rust plugins: $(CARGO) or $(RUSTC) is missing (Debian packages rustc, cargo, libstd-rust-dev-wasm32)"; fi
	@if command -v $(CLANG) >/dev/null; then \
		echo "plugin amount_c (C)"; \
		$(CLANG) --target=wasm32-wasi -O2 -mexec-model=reactor -Isdk/c -o $(PLUGIN_DIR)/amount_c.wasm examples/plugins/amount-c/amount.c || exit 1; \
		cp examples/plugins/amount-c/amount_c.yaml $(PLUGIN_DIR)/; \
	else echo "skipping the C plugin: $(CLANG) is missing (Debian packages clang, lld, wasi-libc, libclang-rt-dev-wasm32)"; fi
	@if command -v wat2wasm >/dev/null; then \
		echo "plugin amount (WebAssembly text)"; \
		wat2wasm examples/plugins/amount-wat/amount.wat -o $(PLUGIN_DIR)/amount.wasm && cp examples/plugins/amount-wat/amount.yaml $(PLUGIN_DIR)/; \
	else echo "skipping the WebAssembly-text plugin: wat2wasm is not installed (Debian package wabt)"; fi

## build: build bin/segd
build:
	$(GO) build -o bin/segd ./cmd/segd

## test: vet and run every test with the race detector (the host module, then the sdk module; the plugins package
## compiles a dozen WebAssembly modules, which takes minutes under -race on 2 cores, hence the timeout)
test:
	$(GO) vet ./...
	cd sdk && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	cd sdk && $(GO) test -race -count=1 ./...

## lint: gofmt, go.mod tidy, and staticcheck
lint:
	@if ! $(GO) mod tidy -diff; then echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; fi
	@if ! (cd sdk && $(GO) mod tidy -diff); then echo "sdk/go.mod is not tidy: run go mod tidy in sdk"; exit 1; fi
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...
	cd sdk && $(GO) run $(STATICCHECK) ./...

## fuzz: run every fuzz target in the repository (scripts/fuzz finds them) for FUZZTIME each; FUZZ_MATCH=REGEXP picks some
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz

## bench: every benchmark, then a short report of each figure's ratio to its baseline from the same run, then segd bench ingest scaled down (BENCH_INGEST= sets its flags; docs/operations.md, "Measured", has the full-scale command)
BENCH_INGEST ?= --users 50000 --events 500000 --runs 1 --freshness 20000 --freshness-duration 5s
bench: build
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count=1 ./... | tee bench.out
	@echo; echo "Ratios to the baseline measured in the same run (docs/operations.md says which):"
	@awk '/^Benchmark/ { line = ""; for (i = 3; i < NF; i++) if ($$(i+1) ~ /(^x-|-x$$|^percall\/plugin$$)/) line = line "  " $$(i+1) "=" $$i; if (line != "") print $$1 line }' bench.out
	@echo; echo "End to end, scaled down: segd bench ingest $(BENCH_INGEST)"
	set -o pipefail; ./bin/segd bench ingest $(BENCH_INGEST) | tee -a bench.out

clean:
	rm -rf bin build $(DATA_DIR) bench.out
