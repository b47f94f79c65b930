package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/pinhole-sip/pinhole/bpf"
)

// version and commit are set at link time by the Makefile's build target
// (-ldflags "-X main.version=$(git describe --always --dirty) -X
// main.commit=..."); a plain go build leaves them empty and the binary's
// build information speaks (its VCS stamp is missing under
// -buildvcs=false, hence the link-time values).
var version, commit string

// buildInfo is what `pinhole version` prints.
type buildInfo struct {
	Version, Commit, Go, BPF string
}

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(), BPF: bpf.ObjectSHA256()}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "devel"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version // "(devel)" for a build from a work tree
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if commit == "" {
				b.Commit = s.Value
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit == "" && b.Commit != "unknown" {
		b.Commit += "-dirty"
	}
	return b
}

func printVersion(w io.Writer) {
	b := currentBuild()
	fmt.Fprintf(w, "pinhole %s\ncommit: %s\ngo: %s\nbpf object sha256: %s\n", b.Version, b.Commit, b.Go, b.BPF)
}
