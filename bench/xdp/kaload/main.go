// Command kaload drives the XDP measurements in bench/xdp (run.sh): it
// sends keepalives, answers to NAT pings, REGISTER floods or paced
// registrations at a fixed rate, and reports what came back. With -serve
// it is instead the bare userspace keepalive echo that XDP is compared
// with; with -mode hold -xdp-bare it holds the bare XDP program
// (bench/xdp/bare) on an interface, the floor pinhole's XDP program is
// compared with. Every run is bounded by -duration.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mode := flag.String("mode", "crlf", "crlf | natping | reply | flood | register | serve | hold")
	target := flag.String("target", "", "pinhole's UDP `address:port`")
	local := flag.String("local", "", "local `address` to send from (and, for serve, to listen on, with a port)")
	rate := flag.Int("rate", 100000, "datagrams (or registrations) per second")
	dur := flag.Duration("duration", 10*time.Second, "how long to send")
	flag.IntVar(&cpu, "cpu", -1, "report the busy time of this `CPU` (from /proc/stat) while sending")
	flag.StringVar(&pids, "pids", "", "space-separated `PIDs` (pinhole, the NAPI threads) whose CPU time is reported per datagram")
	pass := flag.String("xdp-pass", "", "attach a pass-through XDP program to this `interface` while running")
	bareIf := flag.String("xdp-bare", "", "attach the bare XDP baseline (bench/xdp/bare: CRLF answered, the rest to 5060 dropped) to this `interface` while running")
	flag.Parse()
	if *pass != "" {
		detach, err := attachPass(*pass)
		if err != nil {
			fail(err)
		}
		defer detach()
	}
	if *bareIf != "" {
		detach, err := attachBare(*bareIf)
		if err != nil {
			fail(err)
		}
		defer detach()
	}
	if *dur <= 0 || *dur > 10*time.Minute || *rate <= 0 || *rate > 5_000_000 {
		fail(errors.New("-duration must be in (0, 10m] and -rate in (0, 5e6]"))
	}
	var err error
	switch *mode {
	case "serve":
		err = serve(*local, *dur)
	case "hold":
		// Keep -xdp-pass or -xdp-bare attached for -duration (or until a signal).
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		select {
		case <-ctx.Done():
		case <-time.After(*dur):
		}
	case "crlf", "natping", "reply", "flood", "register":
		var to netip.AddrPort
		if to, err = netip.ParseAddrPort(*target); err != nil {
			fail(fmt.Errorf("-target: %w", err))
		}
		var c *net.UDPConn
		laddr := &net.UDPAddr{IP: net.ParseIP(*local)}
		if c, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to)); err != nil {
			fail(err)
		}
		defer c.Close()
		switch *mode {
		case "crlf":
			err = blast(c, []byte("\r\n\r\n"), *rate, *dur, true)
		case "natping":
			err = natping(c, *rate, *dur)
		case "reply":
			// A canned answer to a ping nobody sent: for the bare userspace
			// receive-and-drop baseline.
			err = blast(c, answer([]byte("OPTIONS sip:a@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-ph1\r\n"+
				"From: <sip:pinhole@10.0.0.1>;tag=ph1\r\nTo: <sip:a@localhost>\r\nCall-ID: ph-0123456789abcdef\r\nCSeq: 1 OPTIONS\r\n\r\n")), *rate, *dur, false)
		case "flood":
			err = blast(c, registerMsg(c, "flood", "flood-call", 1), *rate, *dur, false)
		case "register":
			err = registrations(c, *rate, *dur)
		}
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fail(err)
	}
}

// cpu is the CPU whose busy time is reported, -1 for none.
var cpu = -1

// cpuBusy returns the time CPU cpu has spent on anything but idle and
// iowait, from /proc/stat (USER_HZ ticks, 10 ms: runs last seconds).
func cpuBusy() time.Duration {
	if cpu < 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail(err)
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(prefix)) {
			continue
		}
		var v [8]int64
		if _, err := fmt.Sscan(string(line[len(prefix):]), &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]); err != nil {
			fail(fmt.Errorf("parse /proc/stat: %w", err))
		}
		// user nice system idle iowait irq softirq steal
		ticks := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		return time.Duration(ticks) * 10 * time.Millisecond
	}
	fail(fmt.Errorf("no %q in /proc/stat", prefix))
	return 0
}

// pids are the processes and threads whose CPU time is reported.
var pids string

// ranTime sums the time every thread of pids has run, from
// /proc/PID/task/*/schedstat (nanoseconds, not ticks). Unlike a core's busy
// time it leaves out whatever else shares the core.
func ranTime() time.Duration {
	var total time.Duration
	for _, f := range strings.Fields(pids) {
		tasks, err := filepath.Glob("/proc/" + f + "/task/*/schedstat")
		if err != nil || len(tasks) == 0 {
			fail(fmt.Errorf("-pids: no process %s", f))
		}
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue // the thread ended
			}
			var ns int64
			if _, err := fmt.Sscan(string(b), &ns); err == nil {
				total += time.Duration(ns)
			}
		}
	}
	return total
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kaload:", err)
	os.Exit(1)
}

// pace calls send(n) every millisecond with the datagrams due, until dur
// has passed; it returns how many it asked for.
func pace(rate int, dur time.Duration, send func(n int)) int {
	start := time.Now()
	total := 0
	for t := time.Now(); t.Sub(start) < dur; t = time.Now() {
		due := int(float64(rate) * t.Sub(start).Seconds())
		if n := due - total; n > 0 {
			send(n)
			total = due
		}
		time.Sleep(time.Millisecond - time.Since(t)%time.Millisecond)
	}
	return total
}

// blast sends msg at rate for dur and, with count, counts what comes back.
func blast(c *net.UDPConn, msg []byte, rate int, dur time.Duration, count bool) error {
	var got atomic.Int64
	done := make(chan struct{})
	if count {
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for {
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := c.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						return
					}
					continue
				}
				got.Add(1)
			}
		}()
	} else {
		close(done)
	}
	var sent, errs int
	busy0, ran0 := cpuBusy(), ranTime()
	start := time.Now()
	pace(rate, dur, func(n int) {
		for range n {
			if _, err := c.Write(msg); err != nil {
				errs++
				continue
			}
			sent++
		}
	})
	elapsed := time.Since(start)
	busy, ran := cpuBusy()-busy0, ranTime()-ran0
	<-done
	fmt.Printf("sent=%d send_errors=%d answered=%d seconds=%.2f offered_per_s=%.0f answered_per_s=%.0f",
		sent, errs, got.Load(), elapsed.Seconds(), float64(sent)/elapsed.Seconds(), float64(got.Load())/elapsed.Seconds())
	if cpu >= 0 {
		fmt.Printf(" cpu%d_busy_s=%.2f cpu%d_util=%.1f%% us_per_sent=%.3f", cpu, busy.Seconds(), cpu,
			100*busy.Seconds()/elapsed.Seconds(), float64(busy.Microseconds())/float64(max(sent, 1)))
	}
	if pids != "" {
		fmt.Printf(" pids_cpu_s=%.3f pids_us_per_sent=%.3f", ran.Seconds(), float64(ran.Nanoseconds())/1000/float64(max(sent, 1)))
	}
	fmt.Println()
	return nil
}

// serve is the bare userspace echo: one socket, one goroutine, a CRLF pong
// for every double-CRLF ping and nothing else.
func serve(local string, dur time.Duration) error {
	addr, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	go func() { <-ctx.Done(); c.Close() }()
	fmt.Printf("serving on %v\n", c.LocalAddr())
	buf := make([]byte, 2048)
	pong := []byte("\r\n")
	var n int
	for {
		k, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fmt.Printf("answered=%d\n", n)
			return nil
		}
		if k == 4 && string(buf[:4]) == "\r\n\r\n" {
			if _, err := c.WriteToUDPAddrPort(pong, from); err == nil {
				n++
			}
		}
	}
}

func registerMsg(c *net.UDPConn, user, callID string, cseq int) []byte {
	l := c.LocalAddr().String()
	// The Contact names another address than the one packets come from,
	// so pinhole records the binding as behind NAT and pings it.
	return fmt.Appendf(nil, "REGISTER sip:localhost SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@localhost>;tag=%s\r\nTo: <sip:%s@localhost>\r\n"+
		"Call-ID: %s\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@192.0.2.99:5060>\r\nExpires: 3600\r\n"+
		"User-Agent: kaload\r\nContent-Length: 0\r\n\r\n", l, callID, cseq, user, callID, user, callID, cseq, user)
}

var callIDRe = regexp.MustCompile(`(?mi)^(?:Call-ID|i)[ \t]*:[ \t]*(ph-[0-9a-f]{16})\r?$`)

// natping registers a binding behind "NAT", waits for pinhole's OPTIONS
// ping, answers it at rate for dur with the ping's token (pinhole expects
// the same token until its next ping: run it with a long natping.interval).
func natping(c *net.UDPConn, rate int, dur time.Duration) error {
	if _, err := c.Write(registerMsg(c, "bench", "kaload-reg", 1)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(70 * time.Second)
	var ping []byte
	for ping == nil {
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no OPTIONS ping from pinhole before the deadline (is natping.interval short enough for the first ping?): %w", err)
		}
		if bytes.HasPrefix(buf[:n], []byte("OPTIONS ")) {
			ping = append([]byte(nil), buf[:n]...)
		}
	}
	m := callIDRe.FindSubmatch(ping)
	if m == nil {
		return fmt.Errorf("ping without a ph- Call-ID:\n%s", ping)
	}
	reply := answer(ping)
	fmt.Printf("token %s\n", m[1])
	return blast(c, reply, rate, dur, false)
}

// answer builds a 200 OK to an OPTIONS the way a phone does: Via, From,
// To (with a tag), Call-ID and CSeq copied.
func answer(req []byte) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 200 OK\r\n")
	sc := bufio.NewScanner(bytes.NewReader(req))
	for sc.Scan() {
		line := sc.Text()
		for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
			if len(line) >= len(h) && bytes.EqualFold([]byte(line[:len(h)]), []byte(h)) {
				b.WriteString(line)
				if h == "To:" {
					b.WriteString(";tag=kaload")
				}
				b.WriteString("\r\n")
			}
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// registrations sends one new REGISTER per 1/rate, each for its own user,
// retransmitting on RFC 3261 timer E (500 ms doubling, 4 s cap) until a
// final answer or 8 s; it reports success and latency.
func registrations(c *net.UDPConn, rate int, dur time.Duration) error {
	type pending struct {
		msg    []byte
		first  time.Time
		next   time.Time
		backof time.Duration
	}
	var mu sync.Mutex
	inflight := map[string]*pending{}
	var lat []time.Duration
	codes := map[string]int{}
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	prefix := hex.EncodeToString(run)
	stop := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		re := regexp.MustCompile(`(?mi)^Call-ID:[ \t]*(\S+)\r?$`)
		for {
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			msg := buf[:n]
			if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || len(msg) < 12 || msg[8] == '1' {
				continue
			}
			m := re.FindSubmatch(msg)
			if m == nil {
				continue
			}
			mu.Lock()
			if p := inflight[string(m[1])]; p != nil {
				lat = append(lat, time.Since(p.first))
				codes[string(msg[8:11])]++
				delete(inflight, string(m[1]))
			}
			mu.Unlock()
		}
	}()
	retransmit := func(now time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for id, p := range inflight {
			if now.Sub(p.first) > 8*time.Second {
				codes["timeout"]++
				delete(inflight, id)
				continue
			}
			if now.After(p.next) {
				_, _ = c.Write(p.msg)
				p.backof = min(2*p.backof, 4*time.Second)
				p.next = now.Add(p.backof)
			}
		}
	}
	i := 0
	start := time.Now()
	total := pace(rate, dur, func(n int) {
		now := time.Now()
		for range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			msg := registerMsg(c, fmt.Sprintf("u%s%d", prefix, i), id, 1)
			i++
			mu.Lock()
			inflight[id] = &pending{msg: msg, first: now, next: now.Add(500 * time.Millisecond), backof: 500 * time.Millisecond}
			mu.Unlock()
			_, _ = c.Write(msg)
		}
		retransmit(now)
	})
	for t := time.Now(); t.Sub(start) < dur+9*time.Second; t = time.Now() {
		mu.Lock()
		left := len(inflight)
		mu.Unlock()
		if left == 0 {
			break
		}
		retransmit(t)
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	codes["timeout"] += len(inflight)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(f*float64(len(lat))))]
	}
	fmt.Printf("registrations=%d ok=%d success=%.3f%% codes=%v p50=%v p99=%v p999=%v max=%v\n",
		total, codes["200"], 100*float64(codes["200"])/float64(max(total, 1)), codes,
		q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), q(0.999).Round(time.Microsecond), q(1).Round(time.Microsecond))
	return nil
}
