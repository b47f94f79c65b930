//go:build integration && race

package e2e

// memoryScale multiplies the memory bounds of the tests: under the race
// detector the pinhole binary testutil builds is race-instrumented too, and
// its shadow memory makes every resident page cost several times more
// (measured 2026-12-07: 40 MiB peak without, 310 MiB with, for the same
// 1 000 stream connections).
const memoryScale = 8
