package fastpath

import (
	"context"
	"log/slog"
	"os"
	"runtime"
)

// spareProcs is how many Ps (the Go scheduler's right to run Go code)
// pinhole keeps beside its event loops, so that a loop coming back from
// epoll_wait finds one idle (docs/fastpath.md, "Threads and Ps").
//
// Why: a gnet loop waits for its socket in a blocking epoll_wait. While it
// waits, the runtime's monitor (sysmon) hands its P to other goroutines as
// soon as no other P is idle; when the datagrams arrive, the loop needs a
// P back and, finding none, queues behind whatever holds them until one
// blocks or is preempted (10 ms). With one P beside one loop, pinned to
// one core, that was 20 % of the loop's time at 5 000 first registrations
// a second, waits of up to 376 ms, and the hand-off and the registrar's
// queue shed (execution trace, 2026-12-07). At those moments the trace
// found, beside the loop, at most four goroutines running or runnable in
// 94 % of cases: the stateless REGISTER worker, the store's committer and
// the two ristretto policy goroutines of the absorption caches, which
// count every cache look-up in bursts of 25–40 ms. Four spare Ps cover
// them; the loop then waited 3 % of its time, at most 14 ms, and nothing
// was shed. A spare P costs nothing while idle: the CPU time pinhole may
// use is still its affinity's or its quota's; only the threads that have
// work share it, as the kernel schedules them.
const spareProcs = 4

// reserveProcs makes sure the Go scheduler has spareProcs Ps for the rest
// of pinhole besides the loops event loops: GOMAXPROCS at least loops +
// spareProcs. It never lowers GOMAXPROCS.
func reserveProcs(loops int, log *slog.Logger) {
	have := runtime.GOMAXPROCS(0)
	want := loops + spareProcs
	if have >= want {
		return
	}
	runtime.GOMAXPROCS(want)
	level := slog.LevelInfo
	if os.Getenv("GOMAXPROCS") != "" {
		// The operator asked for fewer; say loudly that it was overruled.
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "GOMAXPROCS raised: an event loop that leaves epoll_wait needs an idle P, beside those the slow path's goroutines hold",
		"from", have, "to", want, "loops", loops)
}
