//go:build race

package location

// raceEnabled: the race detector changes heap sizes and speed, so the
// memory figure is not measured under it.
const raceEnabled = true
