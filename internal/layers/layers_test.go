package layers

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pinhole-sip/pinhole/"

// layer is where a package stands; a package may import only packages of
// its own layer or below (test files are not counted: tests may reach
// up to build their fixtures).
func layer(pkg string) (int, bool) {
	p := strings.TrimPrefix(pkg, module)
	switch {
	case p == pkg:
		return 0, false // not ours
	case strings.HasPrefix(p, "internal/testutil"), strings.HasPrefix(p, "internal/e2e"), strings.HasPrefix(p, "internal/layers"):
		return 9, true // test helpers and suites stand above everything
	case strings.HasPrefix(p, "internal/"):
		return 0, true // the bottom: config, location, small shared pieces
	case strings.HasPrefix(p, "bpf"), strings.HasPrefix(p, "fastpath"), strings.HasPrefix(p, "slowpath"):
		return 1, true // the paths
	case strings.HasPrefix(p, "cmd/"):
		return 2, true // the daemon and what composes the paths
	case strings.HasPrefix(p, "bench/"), strings.HasPrefix(p, "scripts/"):
		return 3, true // tools beside the product
	}
	return 0, false
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestLayersOnlyLookDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "integration", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		from, ok := layer(p.ImportPath)
		if !ok {
			t.Errorf("%s: in no layer; add it to docs/architecture.md and to this test", p.ImportPath)
			continue
		}
		short := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			to, ours := layer(imp)
			if !ours {
				continue
			}
			target := strings.TrimPrefix(imp, module)
			switch {
			case to > from:
				t.Errorf("%s (layer %d) imports %s (layer %d): imports only look down", short, from, target, to)
			case strings.HasPrefix(short, "fastpath") && strings.HasPrefix(target, "slowpath"):
				t.Errorf("%s imports %s: the fast path and the slow path meet at the hand-off and the store, never in code", short, target)
			case strings.HasPrefix(short, "slowpath") && strings.HasPrefix(target, "fastpath"):
				t.Errorf("%s imports %s: the slow path is told of the fast path through hooks, never in code", short, target)
			}
		}
	}
	if n < 30 {
		t.Fatalf("go list found %d packages: the pattern is wrong", n)
	}
}
