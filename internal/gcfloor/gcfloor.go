// Package gcfloor keeps Go's garbage collector from running more often
// than a heap of a given size needs: a floor under the heap goal.
//
// Go starts a collection when the heap has grown by GOGC percent (100 by
// default) over what the last one left live. A rumor node keeps little on
// the Go heap (pebble's block cache and memtables are allocated outside
// it), so its live heap is small (about 16 MB in a cluster node serving
// redis-benchmark) and, at tens of thousands of requests a second, it
// collected several times a second, each collection a few milliseconds of
// CPU and tens of milliseconds of write barriers and assists on the
// requests in flight (the cluster's p99).
//
// While twice the live heap is below the floor, the floor turns GOGC off
// and sets Go's soft memory limit (GOMEMLIMIT) to the floor, so the
// collector runs when the memory Go manages reaches the floor: no later,
// the memory stays bounded, and no sooner, collections are rarer. Once
// twice the live heap reaches the floor, it gives back Go's default
// (GOGC=100, no limit): a large heap is collected as it always was, and a
// live heap that outgrew the floor never meets a limit that would have
// the collector run without pause. It decides again after every
// collection.
package gcfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// DefaultPercent is Go's default GOGC.
const DefaultPercent = 100

// Limited reports whether, after a collection that left live bytes live,
// the next one should wait for the memory limit at floor bytes (true) or
// follow Go's default (false). limited is the current mode: leaving the
// limit takes twice the live heap reaching the floor, coming back takes
// it falling under nine tenths of it, so a live heap near half the floor
// does not flip the mode every cycle.
func Limited(live, floor uint64, limited bool) bool {
	if floor == 0 {
		return false
	}
	twice := 2 * float64(live) // in floating point: no overflow for any sizes
	if limited {
		return twice < float64(floor)
	}
	return twice < 0.9*float64(floor)
}

// A Floor adjusts the collector after every collection; see the package
// doc.
type Floor struct {
	floor   uint64
	stopped atomic.Bool
	cycles  atomic.Uint64
	mu      sync.Mutex
	limited bool
}

// Start sets the floor at floor bytes (positive) until Stop. It changes
// process-wide state (GOGC and the memory limit): a program starts one at
// most, and none if its user set GOGC or GOMEMLIMIT.
func Start(floor uint64) *Floor {
	f := &Floor{floor: floor}
	f.mu.Lock()
	f.set(true) // nothing is live yet
	f.mu.Unlock()
	f.arm()
	return f
}

// Stop stops adjusting and gives back Go's default.
func (f *Floor) Stop() {
	if f.stopped.Swap(true) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(false)
}

// Cycles returns how many collections the floor has seen.
func (f *Floor) Cycles() uint64 { return f.cycles.Load() }

// set puts the collector in the limited mode or gives back the default.
// The caller holds mu.
func (f *Floor) set(limited bool) {
	if limited {
		// Limit first: with GOGC off and no limit the heap would grow
		// without bound, however briefly.
		debug.SetMemoryLimit(int64(min(f.floor, math.MaxInt64)))
		debug.SetGCPercent(-1)
	} else {
		debug.SetGCPercent(DefaultPercent)
		debug.SetMemoryLimit(math.MaxInt64)
	}
	f.limited = limited
}

// arm has adjust run after the next collection: a finalizer runs once the
// collector has found its object unreachable, that is after a cycle, and
// each run arms the next.
func (f *Floor) arm() {
	sentinel := new([16]byte) // not a tiny allocation, which shares a block with others
	runtime.SetFinalizer(sentinel, func(*[16]byte) {
		if f.stopped.Load() {
			return
		}
		f.cycles.Add(1)
		f.adjust()
		f.arm()
	})
}

// adjust chooses the mode for the live heap the last collection left.
func (f *Floor) adjust() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	if l := Limited(s[0].Value.Uint64(), f.floor, f.limited); l != f.limited {
		f.set(l)
	}
}
