package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// TestIdleReleaseOncePerQuietSpell: no release while collections run on
// their own; one at the first look without any after some; none again
// until collections resume.
func TestIdleReleaseOncePerQuietSpell(t *testing.T) {
	var s idleRelease
	released := 0
	release := func() { released++ }
	s.look(5, release) // the first look: collections have run (since start)
	for _, c := range []uint64{6, 9, 12} {
		s.look(c, release) // busy: collecting on its own
	}
	if released != 0 {
		t.Fatalf("released %d times while busy", released)
	}
	s.seen = 12
	s.look(12, release) // quiet
	if released != 1 {
		t.Fatalf("released %d times at the first quiet look, want 1", released)
	}
	s.look(s.seen, release)
	s.look(s.seen, release)
	if released != 1 {
		t.Fatalf("released %d times over a quiet spell, want 1", released)
	}
	s.look(s.seen+3, release) // busy again
	s.look(s.seen, release)   // quiet again
	if released != 2 {
		t.Fatalf("released %d times after a second quiet spell, want 2", released)
	}
}

// TestIdleReleaseReturnsMemory: the release a quiet look makes gives the
// free heap back to the OS.
func TestIdleReleaseReturnsMemory(t *testing.T) {
	burst := make([][]byte, 64)
	for i := range burst {
		burst[i] = make([]byte, 1<<20)
		burst[i][0] = 1
	}
	runtime.KeepAlive(burst)
	burst = nil
	runtime.GC() // the burst is now free heap, not yet returned
	if free := heapFree(); free < 32<<20 {
		t.Skipf("only %d MB free after the collection: the runtime's scavenger returned the burst first", free>>20)
	}
	s := idleRelease{seen: collections(), armed: true}
	s.look(s.seen, debug.FreeOSMemory)
	if free := heapFree(); free > 16<<20 {
		t.Fatalf("%d MB of heap free and not returned after the idle release", free>>20)
	}
	if s.armed || s.seen != collections() {
		t.Fatalf("after a release: armed %v, seen %d of %d collections", s.armed, s.seen, collections())
	}
}

func heapFree() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}
