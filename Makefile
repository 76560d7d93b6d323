# astrid-node developer targets. `make run` starts a node with the example
# capsules; `make test` runs the whole suite as CI does.

GO          ?= go
BIN         := bin
ASTRID_HOME ?= $(CURDIR)/.cache/astrid-home
RUN_FLAGS   ?=

.PHONY: all build tools capsules run test bench clean

all: build

build:
	$(GO) build -o $(BIN)/astrid-node ./cmd/astrid-node

tools:
	scripts/install-tools.sh

# The runtime's script builds every capsule under capsules/ into the
# node's capsule directory.
capsules:
	@mkdir -p $(ASTRID_HOME)/capsules
	@if [ -x scripts/build-capsules.sh ]; then \
		scripts/build-capsules.sh $(ASTRID_HOME)/capsules; \
	else \
		echo "scripts/build-capsules.sh not present yet: starting without capsules"; \
	fi

run: build capsules
	$(BIN)/astrid-node run --home $(ASTRID_HOME) $(RUN_FLAGS)

test:
	scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) .cache
