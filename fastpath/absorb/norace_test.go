//go:build !race

package absorb

const raceEnabled = false
