# sshgate: build, run and test targets. `make test` is what CI runs.
GO        ?= go
BIN       ?= bin
DATA      ?= ./sshgate-data
LISTEN    ?= 127.0.0.1:2222
FUZZTIME  ?= 30s
# What `make test` gives each fuzz target (their committed corpora also run in every go test).
SMOKEFUZZ ?= 2s
TESTFLAGS ?=
# The Go toolchain every target builds and tests with: the newest the module
# proxy serves here, at or above every fixed standard-library advisory (the
# machine's own Go, 1.26.8, is below several: see `make vulncheck`). The go
# command fetches it from the module proxy once (about 76 MB).
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN
# What `sshgate version` says: stamped from git (a tree without git says "unknown").
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
CLIPKG    := github.com/sshgate/sshgate/internal/cli
LDFLAGS   := -X $(CLIPKG).Version=$(VERSION) -X $(CLIPKG).Commit=$(COMMIT) -X $(CLIPKG).BuildDate=$(BUILDDATE)

PREFIX    ?= /usr/local
DESTDIR   ?=
SYSCONFDIR ?= /etc
UNITDIR   ?= /etc/systemd/system

.PHONY: agent-image image all build install run test test-setup e2e bench fuzz clean vulncheck k8s-up k8s-down

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/sshgate ./cmd/sshgate
	CGO_ENABLED=0 $(GO) build -o $(BIN)/sshgate-agent ./cmd/sshgate-agent

# The agent image of kubernetes targets (kubernetes.agent_image), FROM
# scratch with Debian's docker and no pull. Load it into a cluster's nodes,
# e.g. `docker save sshgate/agent:latest | ctr -n k8s.io images import -`.
AGENT_IMAGE ?= sshgate/agent:latest
agent-image: build
	d=$$(mktemp -d) && cp $(BIN)/sshgate-agent dist/kubernetes/Dockerfile.agent $$d/ && \
	DOCKER_BUILDKIT=0 docker build -q --network none -f $$d/Dockerfile.agent -t $(AGENT_IMAGE) $$d; s=$$?; rm -rf $$d; exit $$s

# The gate's own image (sshgate + sshgate-agent, FROM scratch, uid 65532),
# for running the gate in a cluster: dist/kubernetes/ holds its manifests.
IMAGE ?= sshgate/sshgate:latest
image: build
	d=$$(mktemp -d) && cp $(BIN)/sshgate $(BIN)/sshgate-agent dist/kubernetes/Dockerfile $$d/ && \
	DOCKER_BUILDKIT=0 docker build -q --network none -f $$d/Dockerfile -t $(IMAGE) $$d; s=$$?; rm -rf $$d; exit $$s

# The binaries, the systemd unit (paths rewritten for PREFIX), an example
# $(SYSCONFDIR)/sshgate/sshgate.yaml (kept when one exists) and the README.
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/sshgate $(DESTDIR)$(PREFIX)/share/doc/sshgate
	install -m 0755 $(BIN)/sshgate $(BIN)/sshgate-agent $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|/usr/local/|$(PREFIX)/|g' -e 's|/etc/sshgate/|$(SYSCONFDIR)/sshgate/|g' dist/systemd/sshgate.service > $(DESTDIR)$(UNITDIR)/sshgate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/sshgate.service
	test -e $(DESTDIR)$(SYSCONFDIR)/sshgate/sshgate.yaml || install -m 0644 dist/sshgate.yaml $(DESTDIR)$(SYSCONFDIR)/sshgate/sshgate.yaml
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/sshgate/README.md

run: build
	$(BIN)/sshgate serve --data $(DATA) --listen $(LISTEN)

test-setup:
	bash scripts/test-setup.sh

test: test-setup
	$(GO) test -race -timeout 40m $(TESTFLAGS) ./...
	$(MAKE) fuzz FUZZTIME=$(SMOKEFUZZ)
	$(MAKE) vulncheck

# govulncheck against a database built offline from the golang.org/x/vulndb
# module (cached in /var/cache/sshgate-vulndb); fails on an advisory that
# affects the gate and has a fix (scripts/vulncheck/main.go says the rules).
vulncheck:
	cd scripts/vulncheck && $(GO) test . && $(GO) run . -C ../..

# The private Kubernetes test cluster (scripts/k8s; test-setup starts it too).
k8s-up:
	bash scripts/k8s/up.sh

k8s-down:
	bash scripts/k8s/down.sh

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
