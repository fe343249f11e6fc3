package gcfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestLimited(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		kept, floor uint64
		limited     bool // the mode now
		want        bool
	}{
		{16 * mb, 64 * mb, true, true},   // a cluster node's heap: wait for 64 MB
		{16 * mb, 64 * mb, false, true},  // and come back to it
		{32 * mb, 64 * mb, true, false},  // twice the live heap reaches the floor: Go's default
		{31 * mb, 64 * mb, true, true},   // just under
		{31 * mb, 64 * mb, false, false}, // but coming back takes under nine tenths
		{28 * mb, 64 * mb, false, true},  // 56 MB < 57.6 MB
		{29 * mb, 64 * mb, false, false}, // 58 MB is not
		{100 * mb, 64 * mb, true, false}, // a large heap keeps Go's default
		{0, 64 * mb, false, true},        // nothing live
		{0, 0, true, false},              // no floor
		{1 << 63, math.MaxUint64, false, false},
		{1 << 61, math.MaxUint64, true, true}, // no overflow
	} {
		if got := Limited(tc.kept, tc.floor, tc.limited); got != tc.want {
			t.Errorf("Limited(kept %d, floor %d, now %v) = %v, want %v", tc.kept, tc.floor, tc.limited, got, tc.want)
		}
	}
}

// deepStack recurses depth frames (each with a buffer, so the stack
// grows), then signals ready and waits for release.
func deepStack(depth int, ready func(), release <-chan struct{}) byte {
	var buf [512]byte
	buf[depth%len(buf)] = byte(depth)
	if depth == 0 {
		ready()
		<-release
		return buf[0]
	}
	return deepStack(depth-1, ready, release) + buf[depth%len(buf)]
}

func gcSettings(t *testing.T) (gogc uint64, limit uint64) {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// TestFloorFollowsTheCollections: in this test binary, whose live heap is
// a few MB, the floor turns GOGC off under a memory limit at the floor;
// keeps deciding after each collection; gives back Go's default once the
// live heap passes half the floor, and at Stop.
func TestFloorFollowsTheCollections(t *testing.T) {
	const floor = 256 << 20
	f := Start(floor)
	t.Cleanup(f.Stop)
	const off = math.MaxUint64 // how the metric reads GOGC=off
	if gogc, limit := gcSettings(t); gogc != off || limit != floor {
		t.Fatalf("after Start: GOGC %d, limit %d; want off and %d", gogc, limit, floor)
	}
	collect := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for f.Cycles() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the floor saw %d collections in 10s of runtime.GC(), want %d", f.Cycles(), n)
			}
			runtime.GC()
			time.Sleep(time.Millisecond) // let the finalizer goroutine run
		}
	}
	collect(2)
	if gogc, limit := gcSettings(t); gogc != off || limit != floor {
		t.Fatalf("small heap after collections: GOGC %d, limit %d", gogc, limit)
	}
	// A live heap past half the floor: Go's default.
	big := make([]byte, floor/2+1<<20)
	for i := range big {
		big[i] = 1
	}
	collect(f.Cycles() + 2)
	if gogc, limit := gcSettings(t); gogc != DefaultPercent || limit != math.MaxInt64 {
		t.Fatalf("large heap: GOGC %d, limit %d; want %d and no limit", gogc, limit, DefaultPercent)
	}
	runtime.KeepAlive(big)
	big = nil
	collect(f.Cycles() + 2)
	if gogc, limit := gcSettings(t); gogc != off || limit != floor {
		t.Fatalf("small heap again: GOGC %d, limit %d", gogc, limit)
	}
	// Memory outside the heap counts too: the stacks of many goroutines
	// (as many client connections have) past half the floor give back
	// Go's default, so that the limit never binds on memory a collection
	// cannot free.
	release := make(chan struct{})
	var started sync.WaitGroup
	for range 4000 {
		started.Add(1)
		go func() {
			deepStack(64, started.Done, release) // about 40 KB of stack each
		}()
	}
	started.Wait()
	collect(f.Cycles() + 2)
	kept, _ := Kept()
	if gogc, limit := gcSettings(t); gogc != DefaultPercent || limit != math.MaxInt64 {
		t.Fatalf("4000 goroutines (Go keeps %d MB): GOGC %d, limit %d; want %d and no limit", kept>>20, gogc, limit, DefaultPercent)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		collect(f.Cycles() + 1)
		if gogc, _ := gcSettings(t); gogc == off {
			break
		}
		if time.Now().After(deadline) {
			kept, _ := Kept()
			t.Fatalf("the goroutines ended, and Go still keeps %d MB: the floor did not come back", kept>>20)
		}
	}
	f.Stop()
	if gogc, limit := gcSettings(t); gogc != DefaultPercent || limit != math.MaxInt64 {
		t.Fatalf("after Stop: GOGC %d, limit %d", gogc, limit)
	}
	n := f.Cycles()
	runtime.GC()
	runtime.GC()
	if gogc, _ := gcSettings(t); gogc != DefaultPercent || f.Cycles() > n+1 {
		t.Fatalf("after Stop: GOGC %d, cycles %d -> %d", gogc, n, f.Cycles())
	}
	debug.FreeOSMemory()
}
