# Shell functions the bench scripts share; source it, do not run it.
# Callers set SERVER_PID when they start a server, and HOST and PORT;
# NETNS_EXEC (e.g. "ip netns exec NS") when the server runs in a namespace.

SERVER_PID=
# SERVER_AUX_PIDS: processes started for the server that it needs (the
# Redis Cluster of a server backed by one), stopped after it.
SERVER_AUX_PIDS=

# stop_server stops the server the script started: TERM, then KILL after
# 10 s; then the processes of SERVER_AUX_PIDS the same way.
stop_server() {
  local pid
  for pid in $SERVER_PID $SERVER_AUX_PIDS; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PID= SERVER_AUX_PIDS=
}

# wait_udp waits up to UDP_WAIT_S (10) seconds for something to listen on
# udp PORT; $1 names the server's log file in OUT for the error message.
wait_udp() {
  for _ in $(seq $((${UDP_WAIT_S:-10} * 10))); do
    ${NETNS_EXEC:-} ss -Hlun "sport = :$PORT" | grep -q . && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nothing listens on udp $HOST:$PORT; see $OUT/$1.log" >&2
  return 1
}

# write_pinhole_cfg writes OUT/pinhole.yaml: pinhole serving udp HOST:PORT,
# digest from OUT/users.txt, metrics on METRICS_HOST (default HOST):METRICS_PORT.
write_pinhole_cfg() { # fastpath: true|false; batch; redis addresses ("": bbolt); AUTH=0 leaves digest authentication out
  local auth="auth: {realm: pinhole, credentials: $OUT/users.txt, algorithms: [MD5], nonce_ttl: 300s}"
  [[ ${AUTH:-1} == 0 ]] && auth=""
  local location=""
  [[ -n ${3:-} ]] && location="location: {backend: redis, redis: {addresses: [$3]}}"
  cat >"$OUT/pinhole.yaml" <<YAML
listen: {udp: ["$HOST:$PORT"], tcp: [], tls: [], ws: [], wss: []}
domains: ["$HOST"]
data_dir: $OUT/pinhole-data
registrar: {min_expires: 60, max_expires: 7200, default_expires: 3600, max_contacts: 10}
$auth
log: {level: info}
metrics: {listen: "${METRICS_HOST:-$HOST}:$METRICS_PORT"}
api: {listen: ""}
natping: {interval: 0s}
fastpath: {enabled: $1, loops: 1, batch: ${2:-64}}
$location
YAML
}
