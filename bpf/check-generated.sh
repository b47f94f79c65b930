#!/bin/sh
# Regenerates the BPF object and its Go bindings and fails if they differ from
# what is committed: CI runs this to prove xdp_bpfel.{go,o} match xdp_sip.c.
# Needs Debian bookworm's clang 14, llvm-strip and libbpf-dev; another clang
# emits other (valid) bytes.
set -eu
cd "$(dirname "$0")/.."
go generate ./bpf
git diff --exit-code -- bpf/
