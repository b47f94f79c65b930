package fastpath

import (
	"context"
	"log/slog"
	"os"
	"runtime"
)

// reserveProcs makes sure the Go scheduler has a P for the rest of pinhole
// besides the loops event loops: GOMAXPROCS at least loops + 1.
//
// Why: a gnet loop waits for its socket in epoll_wait, a system call that
// keeps the loop's P until the runtime's monitor (sysmon) takes it back,
// after 20 µs at best and up to 10 ms when the process has been quiet.
// With as many Ps as loops — one, when pinhole is pinned to one core or
// runs in a container limited to one CPU, where Go sets GOMAXPROCS to 1 —
// every datagram a loop hands to the slow path waits there, and so does
// the worker after it, and the store's committer after that: on one core,
// with GOMAXPROCS=1, first registrations through the fast path took 0.4–2 s
// at 2 000/s and the hand-off shed half of them (2026-12-07,
// docs/fastpath.md "One P more than the loops"), while with a spare P the
// woken goroutine runs at once. The spare P costs nothing when idle: the
// CPU time pinhole may use is still its affinity's or its quota's.
func reserveProcs(loops int, log *slog.Logger) {
	have := runtime.GOMAXPROCS(0)
	want := loops + 1
	if have >= want {
		return
	}
	runtime.GOMAXPROCS(want)
	level := slog.LevelInfo
	if os.Getenv("GOMAXPROCS") != "" {
		// The operator asked for fewer; say loudly that it was overruled.
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "GOMAXPROCS raised: each event loop holds a P while it waits for its socket, and the slow path needs one of its own",
		"from", have, "to", want, "loops", loops)
}
