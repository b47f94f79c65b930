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
