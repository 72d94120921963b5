//go:build race

package cluster

// raceDetector: the tests run under -race.
const raceDetector = true
