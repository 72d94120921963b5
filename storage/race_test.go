//go:build race

package storage

// raceEnabled reports a build with the race detector, which is slower.
const raceEnabled = true
