#!/bin/sh
# Regenerates the bare XDP baseline (bench/xdp/bare) and fails if the object
# or its Go bindings differ from what is committed, as bpf/check-generated.sh
# does for pinhole's program; `make check-generated` runs both. Needs the
# same toolchain: Debian bookworm's clang 14, llvm-strip and libbpf-dev.
set -eu
cd "$(dirname "$0")/../.."
go generate ./bench/xdp/bare
git diff --exit-code -- bench/xdp/bare/
