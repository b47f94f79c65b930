package slowpath

import (
	"flag"
	"os"
	"testing"
)

// fuzzMinimizeTime is how long the fuzzer may spend shrinking one input
// before it goes on fuzzing, unless -fuzzminimizetime says otherwise.
//
// Why not the default minute: the minimizer (Go's internal/fuzz,
// minimizeBytes) tries every byte, then every span of bytes, of an input
// that found new coverage: about n²/2 runs, some 250 000 for the 700-byte
// device REGISTERs this package's targets start from. At the few thousand
// runs a second of a target that goes through sipgo's parser and the
// registrar, each new input held a fuzzing worker for the whole minute,
// and FuzzVouched and FuzzRaw200VsSipgo reported 0 executions a second
// for most of a 30 s run. One second is enough for the minimizer's first
// two passes (cutting the tail, removing single bytes: about n runs),
// which do most of the shrinking.
const fuzzMinimizeTime = "1s"

func TestMain(m *testing.M) {
	// Before m.Run parses the command line: a -fuzzminimizetime given
	// there still wins. The fuzzing workers are this binary too.
	if err := flag.Set("test.fuzzminimizetime", fuzzMinimizeTime); err != nil {
		panic("set -test.fuzzminimizetime: " + err.Error())
	}
	os.Exit(m.Run())
}
