// Command echo-responder answers SIP over UDP with canned replies and no
// state (see bench/echo), to measure the load generator's own ceiling.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pinhole-sip/pinhole/bench/echo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5060", "UDP `address:port` to answer on")
	waitFlag := flag.String("wait", "blocking", "how to wait for datagrams: `blocking` (recvmmsg, the generator's ceiling) or loop (the system calls of one of pinhole's event loops: epoll_wait, recvfrom, recvmmsg, sendmmsg)")
	flag.Parse()
	var wait echo.Wait
	switch *waitFlag {
	case "blocking":
		wait = echo.Blocking
	case "loop":
		wait = echo.Loop
	default:
		fmt.Fprintf(os.Stderr, "echo-responder: -wait %q: want blocking or loop\n", *waitFlag)
		os.Exit(2)
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil || !addr.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "echo-responder: -listen %q: want an IPv4 address and port\n", *listen)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var st echo.Stats
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- echo.Serve(ctx, addr, wait, &st, ready) }()
	select {
	case <-ready:
		fmt.Printf("echo-responder ready on %v\n", addr)
	case err := <-done:
		fmt.Fprintln(os.Stderr, "echo-responder:", err)
		os.Exit(1)
	}
	start := time.Now()
	err = <-done
	fmt.Printf("echo-responder: %d received, %d answered in %.1fs\n", st.Received.Load(), st.Answered.Load(), time.Since(start).Seconds())
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-responder:", err)
		os.Exit(1)
	}
}
