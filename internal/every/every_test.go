package every

import (
	"sync"
	"testing"
	"time"
)

func TestSecondAllowsOneASecondAndCountsTheRest(t *testing.T) {
	var s Second
	base := int64(time.Hour)
	if ok, n := s.allowAt(base); !ok || n != 0 {
		t.Fatalf("first event: %v, %d refused; want allowed, 0", ok, n)
	}
	for i := 1; i <= 5; i++ {
		if ok, _ := s.allowAt(base + int64(i)*int64(100*time.Millisecond)); ok {
			t.Fatalf("event %d, %v after the first: allowed", i, time.Duration(i)*100*time.Millisecond)
		}
	}
	if ok, n := s.allowAt(base + int64(time.Second)); !ok || n != 5 {
		t.Fatalf("a second later: %v, %d refused; want allowed, 5", ok, n)
	}
	if ok, n := s.allowAt(base + int64(2*time.Second)); !ok || n != 0 {
		t.Fatalf("another second later: %v, %d refused; want allowed, 0", ok, n)
	}
}

// Concurrent callers at one instant: exactly one is allowed.
func TestSecondAllowsOneOfConcurrentCallers(t *testing.T) {
	var s Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 32 {
		wg.Go(func() {
			if ok, _ := s.allowAt(int64(time.Hour)); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 1 {
		t.Fatalf("%d of 32 concurrent events allowed, want 1", allowed)
	}
	if ok, n := s.Allow(); ok || n != 0 {
		// Allow reads the real clock, which is far below an hour here.
		t.Fatalf("Allow right after: %v, %d", ok, n)
	}
}
