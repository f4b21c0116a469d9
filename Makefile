# tapfw: make build | demo | test | verify | update | clean
GO      ?= go
BIN     := bin/tapfw
PKGS    := ./...

.PHONY: all build demo test test-unit verify update deps clean install bench fuzz soak deb

all: build

# Static (no cgo): a process that starts in 1.5 ms less, and a plugin that
# runs on any host, as the reference CNI plugins are built.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./plugins/tapfw

deps:
	@scripts/deps.sh

## demo: the seed's sample network in sandbox namespaces, probed with real packets
demo: deps build
	$(GO) run ./cmd/tapfw-demo -plugin $(BIN)

## deb: the Debian package bin/tapfw_<version>_<arch>.deb (scripts/deb.sh:
## what it holds and where)
deb:
	scripts/deb.sh bin

## bench: performance in sandbox namespaces: markdown tables on stdout
## and in tmp/bench.md, raw results in tmp/bench.json, chart in tmp/bench.png.
## The full run takes long; BENCH_FLAGS=-quick is a short one (see -h for flags)
BENCH_FLAGS ?=
bench: deps build
	@mkdir -p tmp
	$(GO) run ./cmd/tapfw-bench -plugin $(BIN) -md tmp/bench.md -json tmp/bench.json -chart tmp/bench.png $(BENCH_FLAGS)

## soak: reliability in sandbox namespaces, not part of make test
## (docs/soak.md): 10,000 random ADD/DEL cycles per backend while two VMs
## keep a flow and a probe running; a table per backend on stdout.
## SOAK_FLAGS='-cycles 300' is a short run (see -h for flags)
SOAK_FLAGS ?=
soak: deps build
	$(GO) run ./cmd/tapfw-soak -plugin $(BIN) $(SOAK_FLAGS)

## test: everything, as root: rendering, fake backend, kernel and traffic tests
## (full log in tmp/test.log; under CI=true a skipped test fails the run)
test: deps build verify
	scripts/test.sh

## fuzz: every fuzz target for FUZZTIME each (default 20s), as root
fuzz:
	scripts/fuzz.sh

## test-unit: every test that needs no root, as any user: rendering, fake
## backend, tries, parsers of every package; the kernel tests skip
## (TAPFW_NO_KERNEL, see docs/testing.md)
test-unit:
	TAPFW_NO_KERNEL=1 $(GO) test -count=1 ./...

verify:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags kernelcheck ./pkg/explain

## update: rewrite the golden files in testdata/ from the current code
update:
	$(GO) test ./pkg/netfilter ./pkg/nft -run Golden -update

clean:
	rm -rf bin

## install: the plugin into /opt/cni/bin, the QEMU scripts into /usr/local/lib/tapfw
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)/opt/cni/bin/tapfw
	install -D -m 0755 scripts/qemu-ifup $(DESTDIR)/usr/local/lib/tapfw/qemu-ifup
	install -D -m 0755 scripts/qemu-ifdown $(DESTDIR)/usr/local/lib/tapfw/qemu-ifdown
