//go:build race

package host

// raceSlowdown scales the time bounds of tests under the race detector,
// which slows segd 5-20 times.
const raceSlowdown = 10
