# sshgate: build, run and test targets. `make test` is what CI runs.
GO        ?= go
BIN       ?= bin
DATA      ?= ./sshgate-data
LISTEN    ?= 127.0.0.1:2222
FUZZTIME  ?= 30s
TESTFLAGS ?=

.PHONY: all build run test test-setup e2e bench fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/sshgate ./cmd/sshgate
	CGO_ENABLED=0 $(GO) build -o $(BIN)/sshgate-agent ./cmd/sshgate-agent

run: build
	$(BIN)/sshgate serve --data $(DATA) --listen $(LISTEN)

test-setup:
	bash scripts/test-setup.sh

test: test-setup
	$(GO) test -race -timeout 40m $(TESTFLAGS) ./...

# Only the end-to-end suite (real OpenSSH clients, sshd and Docker).
e2e: test-setup
	$(GO) test -race -timeout 30m $(TESTFLAGS) ./e2e/...

bench:
	$(GO) run ./e2e/bench

# Every Fuzz target of every package, FUZZTIME each (go test -fuzz takes one
# target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf $(BIN)
