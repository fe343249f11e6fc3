package gcfloor

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// ReleaseWhenIdle gives the memory a burst left behind back to the OS once
// the process goes quiet: Go collects only as the heap grows, so after a
// burst of large values (a pipeline of megabyte SETs held hundreds of MB
// in flight) an idle node kept it all until the runtime's forced
// collection two minutes later (a review saw 420 MB resident 30 s after
// such a load, against redis's 70 MB a second after). Every interval in
// which no collection ran after one in which some did, it runs
// debug.FreeOSMemory once (a collection, then every free page back to
// the OS), if the heap holds more than minHeld bytes from the OS. A busy
// process collects on its own and is left alone; an idle one pays at most
// one collection per quiet spell, and a small one none. It runs until
// stop is closed.
func ReleaseWhenIdle(every time.Duration, minHeld uint64, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	release := func() {
		if heapHeld() > minHeld {
			debug.FreeOSMemory()
		}
	}
	var s idleRelease
	s.look(collections(), release)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.look(collections(), release)
		}
	}
}

// heapHeld is the heap memory taken from the OS and not given back:
// objects (live or not yet collected), free spans and unused parts.
func heapHeld() uint64 {
	sample := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(sample)
	var n uint64
	for _, s := range sample {
		if s.Value.Kind() == metrics.KindUint64 {
			n += s.Value.Uint64()
		}
	}
	return n
}

// idleRelease decides, at each look, whether to release.
type idleRelease struct {
	seen  uint64 // collections counted at the last look
	armed bool   // some ran since the last release
}

// look takes the collections counted now, and releases (calls release,
// which collects) if none ran since the last look but some ran before it.
func (s *idleRelease) look(cycles uint64, release func()) {
	if cycles != s.seen {
		s.seen, s.armed = cycles, true
		return
	}
	if !s.armed {
		return
	}
	s.armed = false
	release()
	s.seen = collections()
}

func collections() uint64 {
	sample := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
