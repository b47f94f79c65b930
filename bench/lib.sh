# Shell functions the bench scripts share; source it, do not run it.
# Callers set SERVER_PID when they start a server, and HOST and PORT;
# NETNS_EXEC (e.g. "ip netns exec NS") when the server runs in a namespace.

SERVER_PID=

# stop_server stops the server the script started: TERM, then KILL after 10 s.
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
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
