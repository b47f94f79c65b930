#!/usr/bin/env bash
# memsplit.sh PID: the process's resident memory by kind of mapping, from
# /proc/PID/smaps, in kB: anonymous (Go's heap arenas, stacks, runtime
# metadata), bindings.db (bbolt's map of the file: page cache the kernel
# may drop), the binary, other files and the kernel's special mappings.
# docs/operations.md, "Memory", reads pinhole's figures this way.
set -euo pipefail
pid=${1:?usage: memsplit.sh PID}
awk '
  function kind(name) {
    if (name == "") return "anonymous"
    if (name ~ /\.db$/) return "bbolt " name
    if (name ~ /^\[/) return name
    if (name ~ /\/pinhole( \(deleted\))?$/) return "binary"
    return "other files"
  }
  /^[0-9a-f]+-[0-9a-f]+ / {
    name = ""
    for (i = 6; i <= NF; i++) name = name (i > 6 ? " " : "") $i
    k = kind(name)
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    next
  }
  $1 ~ /^(Rss|Private_Clean|Private_Dirty|Anonymous):$/ { v[k, substr($1, 1, length($1) - 1)] += $2 }
  END {
    printf "%-44s %10s %13s %13s %10s\n", "mapping (kB)", "Rss", "Private_Clean", "Private_Dirty", "Anonymous"
    for (i = 1; i <= n; i++) {
      k = order[i]
      printf "%-44s %10d %13d %13d %10d\n", k, v[k, "Rss"], v[k, "Private_Clean"], v[k, "Private_Dirty"], v[k, "Anonymous"]
      t["Rss"] += v[k, "Rss"]; t["Private_Clean"] += v[k, "Private_Clean"]
      t["Private_Dirty"] += v[k, "Private_Dirty"]; t["Anonymous"] += v[k, "Anonymous"]
    }
    printf "%-44s %10d %13d %13d %10d\n", "total", t["Rss"], t["Private_Clean"], t["Private_Dirty"], t["Anonymous"]
  }' "/proc/$pid/smaps"
