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
// While twice what Go must keep (the live heap, plus the memory the
// runtime holds besides the heap: goroutine stacks, its own metadata) is
// below the floor, the floor turns GOGC off and sets Go's soft memory
// limit (GOMEMLIMIT) to the floor, so the collector runs when the memory
// Go manages reaches the floor: no later, the memory stays bounded, and
// no sooner, collections are rarer. Once twice that reaches the floor, it
// gives back Go's default (GOGC=100, no limit): a large heap, or the
// stacks of thousands of connections, are handled as Go always does, and
// never meet a limit that would have the collector run without pause. It
// decides again after every collection.
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

// Limited reports whether, after a collection that left kept bytes that
// Go must keep (the live heap and the runtime's other memory), the next
// one should wait for the memory limit at floor bytes (true) or follow
// Go's default (false). limited is the current mode: leaving the limit
// takes twice kept reaching the floor, coming back takes it falling under
// nine tenths of it, so memory near half the floor does not flip the mode
// every cycle.
func Limited(kept, floor uint64, limited bool) bool {
	if floor == 0 {
		return false
	}
	twice := 2 * float64(kept) // in floating point: no overflow for any sizes
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

// adjust chooses the mode for what the last collection left.
func (f *Floor) adjust() {
	kept, ok := Kept()
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	if l := Limited(kept, f.floor, f.limited); l != f.limited {
		f.set(l)
	}
}

// keptMetrics: the live heap; all the memory Go maps, and the parts of the
// heap that are not live objects (free, returned to the OS, or unused in
// spans). What the memory limit counts beyond the live heap is the total
// less those heap parts.
var keptMetrics = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/unused:bytes",
}

// Kept returns the memory Go must keep after the last collection: the
// live heap plus the runtime's memory outside the heap (goroutine stacks,
// metadata, buffers), as the memory limit counts it.
func Kept() (uint64, bool) {
	s := make([]metrics.Sample, len(keptMetrics))
	for i, n := range keptMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0, false
		}
		v[i] = s[i].Value.Uint64()
	}
	live, total := v[0], v[1]
	heap := v[2] + v[3] + v[4] + v[5]
	if heap > total {
		return live, true
	}
	return live + (total - heap), true
}
