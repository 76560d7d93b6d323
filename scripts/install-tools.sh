#!/usr/bin/env bash
# Installs the tools the tests use into the project's bin/ directory:
# the nats CLI, pinned. Safe to run again: it does nothing when the right
# version is already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"
nats_version="v0.5.0"

if [[ -x "$bin/nats" ]] && [[ "$("$bin/nats" --version 2>/dev/null)" == "$nats_version" ]]; then
	echo "nats CLI $nats_version: $bin/nats"
	exit 0
fi

mkdir -p "$bin"
echo "installing nats CLI $nats_version into $bin ..."
GOBIN="$bin" go install "github.com/nats-io/natscli/nats@$nats_version"
echo "nats CLI $("$bin/nats" --version): $bin/nats"
