//go:build integration

package e2e

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
)

// The ng command rate one client sustains against one userspace rtpengine
// on the same machine, each in its namespace (docs/media.md, "Measured"):
//
//	go test -tags integration -run '^$' -bench RTPEngine -benchtime 5s ./internal/e2e/
//
// "serial" waits for each reply before the next command; "parallel" keeps
// 16 goroutines (b.SetParallelism × GOMAXPROCS) sending through the one
// client, as concurrent INVITEs would. "offer+answer+delete" is the least
// a relayed call costs; cmds/s counts every command, calls/s is a third.
func BenchmarkRTPEngine(b *testing.B) {
	m := startMediaNetB(b)
	body := plainSDP(m.callerAddr, 4000)
	var seq atomic.Uint64
	offerDelete := func(ctx context.Context) error {
		id := "bench-" + strconv.FormatUint(seq.Add(1), 10)
		if _, err := m.client.Offer(ctx, id, "f", body, nil); err != nil {
			return err
		}
		_, err := m.client.Delete(ctx, id, "f", "")
		return err
	}
	// A whole call's commands: the callee's answer is a second body, so
	// rtpengine allocates both legs' ports as in a real call.
	answerBody := plainSDP(m.calleeAddr, 4002)
	call := func(ctx context.Context) error {
		id := "bench-" + strconv.FormatUint(seq.Add(1), 10)
		if _, err := m.client.Offer(ctx, id, "f", body, nil); err != nil {
			return err
		}
		if _, err := m.client.Answer(ctx, id, "f", "t", answerBody, nil); err != nil {
			return err
		}
		_, err := m.client.Delete(ctx, id, "f", "")
		return err
	}
	ping := func(ctx context.Context) error { return m.client.Ping(ctx, m.rtp.NG) }
	for _, bc := range []struct {
		name     string
		commands float64 // ng commands per operation
		op       func(context.Context) error
	}{{"ping", 1, ping}, {"offer+delete", 2, offerDelete}, {"offer+answer+delete", 3, call}} {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			ctx := context.Background()
			start := time.Now()
			for b.Loop() {
				if err := bc.op(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*bc.commands/time.Since(start).Seconds(), "cmds/s")
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(8)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := bc.op(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)*bc.commands/time.Since(start).Seconds(), "cmds/s")
		})
	}
}

func startMediaNetB(b *testing.B) *mediaNet {
	b.Helper()
	// A generous timeout: a benchmark measures, it must not retransmit
	// because rtpengine is busy.
	return startMediaNet(b, ng.Config{Timeout: 2 * time.Second, Retries: 0})
}
