package app

import (
	"sync"
	"time"
)

// retentionInterval is how often the retention bounds of the recordings
// and the audit file are applied (and once at start).
const retentionInterval = time.Minute

// every runs fn now and then every interval on a goroutine of its own,
// until the returned stop, which waits for a run in progress.
func every(interval time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			fn()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
