#!/usr/bin/env bash
# The whole test suite, as CI runs it: tools, build, vet, then every test
# (fuzz targets run their seed corpus; benchmarks are only compiled).
# Extra arguments go to `go test`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/install-tools.sh
# The e2e tests look for bin/nats first; PATH is the fallback.
export PATH="$root/bin:$PATH"

go build ./...
go vet ./...
go test -race -timeout 10m "$@" ./...
