#!/usr/bin/env bash
# bench/fastpath/cpu.sh — the server's CPU per answered authenticated
# refresh at a fixed rate on one core, and (for pinhole) how it splits
# into parts (docs/fastpath.md, "The loop's CPU").
#
# The server runs pinned to SERVER_CORE on 127.0.0.1:PORT: pinhole with
# the fast path (one loop, digest MD5 with the credentials sipload
# writes), or the echo responder (SERVER=echo: blocking recvmmsg;
# SERVER=echoloop: -wait loop, the I/O of one event loop). The batched
# generator (bench/cmd/sipload -scenario refresh: cached credentials, the
# next nc each time) runs pinned to GEN_CORE at RATE for DURATION after
# registering every device. Printed: answers/s, p99, the server's user +
# system CPU per answer over the measured run and the load average; for
# pinhole also a CPU profile of the run (/debug/pprof/profile) split into
# parts, each part's samples divided by the refreshes answered meanwhile.
# On a shared machine alternate builds (BIN=a, BIN=b, a, b, ...) and put
# the load average beside every figure.
#
# Settings (environment): BIN=bin/pinhole SERVER=pinhole RATE=30000
#   DURATION=30 (seconds) DEVICES=10000 SERVER_CORE=0 GEN_CORE=1
#   PORT=25160 METRICS_PORT=29160 PORT_BASE=51000 OUT=bench/out/cpu
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-bin/pinhole}
SERVER=${SERVER:-pinhole}
RATE=${RATE:-30000}
DURATION=${DURATION:-30}
DEVICES=${DEVICES:-10000}
SERVER_CORE=${SERVER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
PORT=${PORT:-25160}
METRICS_PORT=${METRICS_PORT:-29160}
PORT_BASE=${PORT_BASE:-51000}
OUT=${OUT:-bench/out/cpu}
((DURATION >= 6)) || { echo "cpu.sh: DURATION must be at least 6 seconds" >&2; exit 2; }

mkdir -p "$OUT"
go build -o "$OUT/" ./bench/cmd/sipload ./bench/cmd/echo-responder
"$OUT/sipload" -write-credentials "$OUT/users.txt" -realm pinhole -devices "$DEVICES"
rm -rf "$OUT/data"
cat >"$OUT/pinhole.yaml" <<YAML
listen: {udp: ["127.0.0.1:$PORT"], tcp: [], tls: [], ws: [], wss: []}
domains: ["127.0.0.1"]
data_dir: $OUT/data
auth: {realm: pinhole, credentials: $OUT/users.txt, algorithms: [MD5], nonce_ttl: 300s}
metrics: {listen: "127.0.0.1:$METRICS_PORT"}
api: {listen: ""}
natping: {interval: 0s}
fastpath: {enabled: true, loops: 1, batch: 64}
YAML

metrics=()
case $SERVER in
pinhole)
  taskset -c "$SERVER_CORE" "$BIN" -config "$OUT/pinhole.yaml" >"$OUT/server.log" 2>&1 &
  metrics=(-server-metrics "http://127.0.0.1:$METRICS_PORT/metrics")
  ;;
echo | echoloop)
  wait=blocking
  [[ $SERVER == echoloop ]] && wait=loop
  taskset -c "$SERVER_CORE" "$OUT/echo-responder" -wait "$wait" -listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
  ;;
*)
  echo "cpu.sh: SERVER=$SERVER: want pinhole, echo or echoloop" >&2
  exit 2
  ;;
esac
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
sleep 2.5
gen_out=$OUT/sipload-$SERVER.txt
rm -f "$gen_out"
taskset -c "$GEN_CORE" "$OUT/sipload" -server "127.0.0.1:$PORT" -scenario refresh -devices "$DEVICES" \
  -rate "$RATE" -duration "${DURATION}s" -warmup 1s -prepare-rate 10000 -port-base "$PORT_BASE" \
  "${metrics[@]}" -server-pid "$srv" >"$gen_out" 2>&1 &
gen=$!
# The measured run starts after the registrations and the warm-up second.
until grep -q '^prepared:' "$gen_out" 2>/dev/null; do
  kill -0 "$gen" 2>/dev/null || { echo "cpu.sh: sipload failed: $(tail -1 "$gen_out")" >&2; exit 1; }
  sleep 0.02
done
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$srv/stat"; } # utime + stime, clock ticks
ticks=$(getconf CLK_TCK)
c0=$(cpu) t0=$(date +%s.%N)
prof_s=$((DURATION - 3))
if [[ $SERVER == pinhole ]]; then
  curl -s -o "$OUT/cpu.prof" "http://127.0.0.1:$METRICS_PORT/debug/pprof/profile?seconds=$prof_s"
else
  sleep "$prof_s"
fi
c1=$(cpu) t1=$(date +%s.%N)
wait "$gen"
ok=$(awk '/^refresh /{print $3}' "$gen_out")
p99=$(awk '/^refresh /{print $8}' "$gen_out")
awk -v s="$SERVER" -v ok="$ok" -v p99="$p99" -v c="$((c1 - c0))" -v hz="$ticks" -v t0="$t0" -v t1="$t1" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN { printf "%s: %d answers/s, p99 %s ms, CPU %.2f µs per answer (%.0f%% of a core), load %s\n", s, ok, p99, c / hz * 1e6 / ((t1 - t0) * ok), 100 * c / hz / (t1 - t0), load }'
[[ $SERVER == pinhole ]] || exit 0

# The profile's samples by part, per refresh answered while it ran.
go tool pprof -top -cum -nodecount=5000 "$BIN" "$OUT/cpu.prof" 2>/dev/null | awk -v n="$((ok * prof_s))" '
  function secs(v) { return v ~ /ms$/ ? v / 1000 : v + 0 }
  /Total samples =/ { for (i = 1; i <= NF; i++) if ($i == "=") total = secs($(i + 1)) }
  $2 ~ /%$/ && $5 ~ /%$/ {
    name = $6
    cum[name] += secs($4)
  }
  function c(pat,   k, s) { s = 0; for (k in cum) if (k ~ pat) s += cum[k]; return s }
  END {
    scan = c("^github.com/pinhole-sip/pinhole/internal/scan.Scan$")
    verify = c("^github.com/pinhole-sip/pinhole/fastpath/absorb.[(][*]Loop[)].verify$")
    absorb = c("^github.com/pinhole-sip/pinhole/fastpath/absorb.[(][*]Loop[)].Absorb$")
    part["1 absorb: scan"] = scan
    part["2 absorb: digest check"] = verify
    part["3 absorb: the rest (cache, identity, reply, touch ring)"] = absorb - scan - verify
    part["4 sendmmsg of the replies"] = c("^github.com/pinhole-sip/pinhole/internal/mmsg.[(][*]Sender[)].Flush$")
    part["5 recvmmsg drain"] = c("^github.com/pinhole-sip/pinhole/internal/mmsg.[(][*]Receiver[)].Recv$")
    part["6 gnet: recvfrom and its address"] = c("^github.com/panjf2000/gnet/v2.[(][*]eventloop[)].readUDP$") - c("^github.com/pinhole-sip/pinhole/fastpath/engine.[(][*]handler[)].OnTraffic$")
    part["7 gnet: epoll_wait"] = c("^golang.org/x/sys/unix.EpollWait$")
    part["8 Go scheduler (gnet Gosched, parking)"] = c("^runtime.mcall$")
    part["9 write-behind: touches into the store"] = c("^github.com/pinhole-sip/pinhole/fastpath/absorb.[(][*]Cache[)].Run$")
    part["10 write-behind: the store to bbolt"] = c("^github.com/pinhole-sip/pinhole/internal/location.[(][*]Memory[)].flushLoop$")
    part["11 ristretto policy goroutine"] = c("^github.com/dgraph-io/ristretto/v2.[(][*]defaultPolicy.*[)].processItems$")
    part["12 garbage collector"] = c("^runtime.gcBgMarkWorker$")
    sum = 0
    for (k in part) sum += part[k]
    part["13 other"] = total - sum
    for (i = 1; i <= 13; i++) for (k in part) if (k ~ ("^" i " ")) {
      label = k; sub(/^[0-9]+ /, "", label)
      printf "  %-52s %6.2f µs %5.1f %%\n", label, part[k] * 1e6 / n, 100 * part[k] / total
    }
    printf "  %-52s %6.2f µs (%.1f s of samples, %d refreshes)\n", "total", total * 1e6 / n, total, n
  }'
