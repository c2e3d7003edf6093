# segd: the two commands are `make run` and `make test`.

GO        ?= go
DATA_DIR  ?= segd-data
LISTEN    ?= 127.0.0.1:4222
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run build test race lint bench clean

## run: build segd and start it with an embedded NATS server, the example rules and a demo stream
run: build
	./bin/segd serve --data-dir $(DATA_DIR) --listen $(LISTEN) --rules examples/rules --demo

## build: build bin/segd
build:
	$(GO) build -o bin/segd ./cmd/segd

## test: vet and run every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## lint: gofmt and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

## bench: every benchmark, with figures reported against their baselines
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./... | tee bench.out
	@echo; echo "Ratios (x) compare with a baseline measured in the same run; see docs/operations.md."

clean:
	rm -rf bin $(DATA_DIR) bench.out
