//go:build integration && !race

package e2e

// memoryScale: without the race detector the bounds hold as written.
const memoryScale = 1
