//go:build race

package audit

// raceEnabled: the race detector adds allocations (sync.Pool drops
// items at random), so allocation counts are not asserted under -race.
const raceEnabled = true
