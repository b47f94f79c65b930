package load

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Meta is what a figure needs to be reproduced: the code it came from, the
// machine, how the generator moved datagrams, and what the caller says
// about the server (Config.Labels: its name, version, settings, the
// network mode).
type Meta struct {
	Commit    string            `json:"commit"`
	Dirty     bool              `json:"dirty"`
	Go        string            `json:"go"`
	CPU       string            `json:"cpu"`
	Cores     int               `json:"cores"`
	Kernel    string            `json:"kernel"`
	LoadStart string            `json:"loadavg_start"` // /proc/loadavg: a busy machine shows here
	LoadEnd   string            `json:"loadavg_end"`
	IO        string            `json:"io"`
	Sockets   int               `json:"sockets,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func collectMeta(cfg *Config) Meta {
	m := Meta{Go: runtime.Version(), Cores: machineCores(), IO: cfg.IO, Labels: cfg.Labels,
		CPU: cpuModel(), Kernel: firstLine("/proc/sys/kernel/osrelease"), LoadStart: loadavg()}
	if cfg.IO == IOBatch {
		m.Sockets = cfg.Sockets
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				m.Commit = s.Value
			case "vcs.modified":
				m.Dirty = s.Value == "true"
			}
		}
	}
	// A binary built outside the repository (go run, go test) has no VCS
	// stamp: the caller may name the commit.
	if c := cfg.Labels["commit"]; c != "" {
		m.Commit, m.Dirty = c, cfg.Labels["dirty"] == "true"
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(l)
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// pinnedCPU is the one CPU the calling thread may run on, or -1.
func pinnedCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil || set.Count() != 1 {
		return -1
	}
	for i := range 1024 {
		if set.IsSet(i) {
			return i
		}
	}
	return -1
}

// cpuBusy returns the busy and total time of CPU n from /proc/stat, in
// clock ticks: everything but idle and iowait, so the softirq and NAPI
// work the kernel does there for the generator's datagrams count, and so
// does anything else that ran there.
func cpuBusy(n int) (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	name := "cpu" + strconv.Itoa(n)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[0] != name {
			continue
		}
		for i, v := range f[1:] {
			x, _ := strconv.ParseUint(v, 10, 64)
			total += x
			if i != 3 && i != 4 { // idle, iowait
				busy += x
			}
		}
		return busy, total
	}
	return 0, 0
}

// machineCores counts the machine's CPUs (not the ones this process may use).
func machineCores() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return strings.Count(string(b), "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(string(b), "processor")]
}
