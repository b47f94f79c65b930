package handoff

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dupFD returns a duplicate of pc's descriptor, as the engine gives the
// Conn a duplicate of the loops' socket.
func dupFD(t *testing.T, pc *net.UDPConn) int {
	t.Helper()
	raw, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	return fd
}

// The slow path's writes leave from the listener's own address, through
// WriteTo and through the raw descriptor (sendmmsg users), on IPv4 and
// on a dual-stack IPv6 socket; reading the socket is refused, and after
// Close nothing is written.
func TestSendSocketWrites(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if network == "udp6" {
				// "udp" on [::]: an AF_INET6 socket that also takes IPv4.
				pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
			}
			if err != nil {
				t.Skip("no", network, err)
			}
			defer pc.Close()
			c := New(netip.MustParseAddrPort("127.0.0.1:5060"), 8)
			if err := c.SetSocket(dupFD(t, pc)); err != nil {
				t.Fatal(err)
			}
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			to := peer.LocalAddr().(*net.UDPAddr)
			wantPort := pc.LocalAddr().(*net.UDPAddr).Port

			if n, err := c.WriteTo([]byte("one"), to); err != nil || n != 3 {
				t.Fatalf("WriteTo: %d, %v", n, err)
			}
			raw, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var sa unix.Sockaddr = &unix.SockaddrInet4{Port: to.Port, Addr: [4]byte{127, 0, 0, 1}}
			if network == "udp6" {
				sa = &unix.SockaddrInet6{Port: to.Port, Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
			}
			var serr error
			if err := raw.Write(func(fd uintptr) bool {
				serr = unix.Sendto(int(fd), []byte("two"), unix.MSG_DONTWAIT, sa)
				return !errors.Is(serr, unix.EAGAIN)
			}); err != nil || serr != nil {
				t.Fatalf("raw Write: %v, %v", err, serr)
			}
			buf := make([]byte, 16)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			for _, want := range []string{"one", "two"} {
				n, from, err := peer.ReadFromUDP(buf)
				if err != nil || string(buf[:n]) != want || from.Port != wantPort {
					t.Fatalf("peer read %q from %v (%v), want %q from port %d", buf[:n], from, err, want, wantPort)
				}
			}
			if err := raw.Read(func(uintptr) bool { return true }); err == nil {
				t.Error("raw Read succeeded: the loops' socket must not be read here")
			}
			if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
				t.Error(err)
			}
			if err := c.SetDeadline(time.Time{}); err != nil {
				t.Error(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteTo([]byte("three"), to); !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
			}
			if err := raw.Control(func(uintptr) {}); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Control after Close: %v", err)
			}
		})
	}
}

// A write waiting for room gives up at its deadline, or when the socket
// is closed, instead of waiting for ever.
func TestSendSocketWaitEnds(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := newSendSocket(dupFD(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	s.setWriteDeadline(time.Now().Add(-time.Second))
	if err := s.waitWritable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past deadline: %v", err)
	}
	s.setWriteDeadline(time.Time{})
	if err := s.waitWritable(); err != nil {
		t.Errorf("an empty socket has room: %v", err)
	}
	s.closing.Store(true)
	if err := s.waitWritable(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("closing: %v", err)
	}
	if err := s.close(); err != nil {
		t.Error(err)
	}
	if err := s.close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}

// A descriptor that is not an IP socket is refused (and closed).
func TestSetSocketRefusesNonIP(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	c := New(netip.MustParseAddrPort("127.0.0.1:5060"), 8)
	if err := c.SetSocket(fds[0]); err == nil {
		t.Fatal("a Unix socket was accepted")
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err == nil {
		t.Error("the refused descriptor was left open")
	}
}
