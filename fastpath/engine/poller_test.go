package engine

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The loops' socket is watched by its loop's epoll set only. A
// registration in the Go runtime's poller too (a net.UDPConn on a
// duplicate, as the slow path's writer once was) wakes an idle thread of
// pinhole for every datagram the loop receives (handoff/socket.go).
func TestLoopSocketInOneEpollSet(t *testing.T) {
	e := startEchoBatch(t, 1, 16)
	fd, err := e.eng.Dup()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if sets := epollSetsWatching(t, st.Ino); sets != 1 {
		t.Errorf("the loop's socket is in %d epoll sets, want 1 (its loop's)", sets)
	}
	// The count sees what it must catch: a net.UDPConn on a duplicate.
	dup, err := e.eng.Dup()
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "dup")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if sets := epollSetsWatching(t, st.Ino); sets != 2 {
		t.Errorf("with a net.UDPConn on a duplicate: %d epoll sets, want 2", sets)
	}
}

// epollSetsWatching counts this process's epoll sets that watch the file
// with inode ino (the "ino:" of each target in /proc/self/fdinfo).
func epollSetsWatching(t *testing.T, ino uint64) int {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	want := "ino:" + strconv.FormatUint(ino, 16)
	sets := 0
	for _, l := range links {
		if target, err := os.Readlink(l); err != nil || target != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open(filepath.Join("/proc/self/fdinfo", filepath.Base(l)))
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "tfd:") && strings.Contains(line+" ", " "+want+" ") {
				sets++
				break
			}
		}
		f.Close()
	}
	return sets
}
