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
// debug.FreeOSMemory once: a collection, then every free page back to
// the OS. A busy process collects on its own and is left alone; an idle
// one pays one collection per quiet spell. It runs until stop is closed.
func ReleaseWhenIdle(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	var s idleRelease
	s.look(collections(), debug.FreeOSMemory)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.look(collections(), debug.FreeOSMemory)
		}
	}
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
