//go:build race

package absorb

// raceEnabled: the race detector changes heap sizes, so the memory per
// AOR is not measured under it.
const raceEnabled = true
