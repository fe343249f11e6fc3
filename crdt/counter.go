package crdt

import (
	"errors"
	"math"
	"math/bits"
)

// ErrOverflow is returned by Counter.Add when the change would take the
// counter, or one actor's running total, out of range.
var ErrOverflow = errors.New("crdt: increment or decrement would overflow")

// A CounterEntry is one actor's share of a PN-counter: the totals it has
// added (Inc) and subtracted (Dec), and the totals a delete had seen
// (IncBase <= Inc, DecBase <= Dec), which no longer count.
type CounterEntry struct {
	Actor            uint64
	Inc, Dec         uint64
	IncBase, DecBase uint64
}

// A Counter is a PN-counter with observed reset. Entries are sorted by
// actor with no duplicates. The zero Counter is a counter that does not
// exist yet.
type Counter struct {
	Entries []CounterEntry
}

// Value is the counter's total: everything added minus everything
// subtracted since the last delete each entry had seen.
//
// Add keeps the total in int64's range as this replica sees it, but
// replicas add through their own actors, so a merge can go past it: the
// total is then held at math.MaxInt64 or math.MinInt64 (and an INCR past
// it fails with ErrOverflow), never wrapped round.
func (c Counter) Value() int64 {
	// Sums in 128 bits: added and subtracted, each up to 2^64 an actor.
	var incHi, incLo, decHi, decLo uint64
	for _, e := range c.Entries {
		var carry uint64
		incLo, carry = bits.Add64(incLo, e.Inc-e.IncBase, 0)
		incHi += carry
		decLo, carry = bits.Add64(decLo, e.Dec-e.DecBase, 0)
		decHi += carry
	}
	if incHi == 0 && decHi == 0 && incLo <= math.MaxInt64 && decLo <= math.MaxInt64 {
		return int64(incLo) - int64(decLo) // the usual case: no overflow possible
	}
	lo, borrow := bits.Sub64(incLo, decLo, 0)
	hi := incHi - decHi - borrow // two's complement, 128 bits
	switch {
	case int64(hi) < -1 || (int64(hi) == -1 && lo < 1<<63):
		return math.MinInt64
	case int64(hi) > 0 || (hi == 0 && lo > math.MaxInt64):
		return math.MaxInt64
	}
	return int64(lo)
}

// Live reports whether the counter exists: some actor changed it since the
// last delete it had seen (a counter taken back to 0 by DECR still exists).
func (c Counter) Live() bool {
	for _, e := range c.Entries {
		if e.Inc != e.IncBase || e.Dec != e.DecBase {
			return true
		}
	}
	return false
}

// Add returns the counter with delta applied by actor. It fails with
// ErrOverflow if the value would leave the int64 range. A delta of 0
// creates a counter that does not exist (as INCRBY key 0 does in Redis):
// one up and one down, which leave its value at 0.
//
// An actor's running totals only grow (a delete only records what they
// were), and they are uint64s: INCRBY of the largest int64 and DECRBY of
// it, twice, saturate one. Add then goes on in an entry of its own under a
// stand-in actor id derived from actor (standIn), which starts from zero:
// entries are independent, and only this actor writes its stand-ins, so
// merges stay sound.
func (c Counter) Add(actor uint64, delta int64) (Counter, error) {
	if delta == 0 {
		if c.Live() {
			return c, nil
		}
		up, err := c.Add(actor, 1)
		if err != nil {
			return c, err
		}
		return up.Add(actor, -1)
	}
	v := c.Value()
	if (delta > 0 && v > math.MaxInt64-delta) || (delta < 0 && v < math.MinInt64-delta) {
		return c, ErrOverflow
	}
	for k := uint64(0); k < maxStandIns; k++ {
		a := standIn(actor, k)
		if out, ok := c.addAs(a, delta); ok {
			return out, nil
		}
	}
	return c, ErrOverflow
}

// maxStandIns bounds the entries an actor may use on one counter: each
// holds 2^64 of increments and as much of decrements.
const maxStandIns = 64

// standIn is actor's k-th entry id: actor itself for k = 0, then ids
// mixed from it (splitmix64), as unlikely as any random actor id to be
// another's.
func standIn(actor, k uint64) uint64 {
	if k == 0 {
		return actor
	}
	z := actor + k*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// addAs applies delta to actor's entry, if its running total has room.
func (c Counter) addAs(actor uint64, delta int64) (Counter, bool) {
	i := 0
	for i < len(c.Entries) && c.Entries[i].Actor < actor {
		i++
	}
	e := CounterEntry{Actor: actor}
	rest := c.Entries[i:]
	if len(rest) > 0 && rest[0].Actor == actor {
		e = rest[0]
		rest = rest[1:]
	}
	if delta >= 0 {
		if e.Inc > math.MaxUint64-uint64(delta) {
			return c, false
		}
		e.Inc += uint64(delta)
	} else {
		d := uint64(-(delta + 1)) + 1 // |delta| without overflowing at MinInt64
		if e.Dec > math.MaxUint64-d {
			return c, false
		}
		e.Dec += d
	}
	out := Counter{Entries: make([]CounterEntry, 0, len(c.Entries)+1)}
	out.Entries = append(out.Entries, c.Entries[:i]...)
	out.Entries = append(out.Entries, e)
	out.Entries = append(out.Entries, rest...)
	return out, true
}

// Reset returns the counter deleted as this replica sees it: every entry's
// current totals stop counting. Changes this replica has not seen survive.
func (c Counter) Reset() Counter {
	if len(c.Entries) == 0 {
		return c
	}
	out := Counter{Entries: make([]CounterEntry, len(c.Entries))}
	for i, e := range c.Entries {
		e.IncBase, e.DecBase = e.Inc, e.Dec
		out.Entries[i] = e
	}
	return out
}

// ResetSeen returns the counter with the increments of seen (what a read
// found) reset, and no others: those of seen this replica has not
// received yet are merged in already reset.
func (c Counter) ResetSeen(seen Counter) Counter {
	return MergeCounters(c, seen.Reset())
}

// resetBy reports whether after, c once a delete applied, reset changes
// that counted: some actor's base rose (an entry after has and c lacks
// is the delete's own knowledge of changes c had not received).
func (c Counter) resetBy(after Counter) bool {
	i := 0
	for _, a := range after.Entries {
		for i < len(c.Entries) && c.Entries[i].Actor < a.Actor {
			i++
		}
		var e CounterEntry
		if i < len(c.Entries) && c.Entries[i].Actor == a.Actor {
			e = c.Entries[i]
		}
		if a.IncBase > e.IncBase || a.DecBase > e.DecBase {
			return true
		}
	}
	return false
}

// MergeCounters returns the counter that has seen both a and b: per actor,
// the larger of each total. It is commutative, associative and idempotent.
func MergeCounters(a, b Counter) Counter {
	switch {
	case len(b.Entries) == 0:
		return a
	case len(a.Entries) == 0:
		return b
	case covers(b, a): // the common case of a replica sent a newer copy
		return b
	case covers(a, b):
		return a
	}
	return mergeCounters(a, b)
}

// covers reports whether c holds every actor o has, each with counts at
// least o's: then merging o into c gives c. (Descends is looser: it also
// lets c lack an actor whose entry in o is all zeros, which a merge would
// add.)
func covers(c, o Counter) bool {
	if len(c.Entries) < len(o.Entries) {
		return false
	}
	i := 0
	for _, y := range o.Entries {
		for i < len(c.Entries) && c.Entries[i].Actor < y.Actor {
			i++
		}
		if i == len(c.Entries) || c.Entries[i].Actor != y.Actor {
			return false
		}
		x := c.Entries[i]
		if x.Inc < y.Inc || x.Dec < y.Dec || x.IncBase < y.IncBase || x.DecBase < y.DecBase {
			return false
		}
	}
	return true
}

// mergeCounters is MergeCounters without its shortcuts (which must give
// what it gives: TestMergeShortcutsAgree).
func mergeCounters(a, b Counter) Counter {
	out := Counter{Entries: make([]CounterEntry, 0, len(a.Entries)+len(b.Entries))}
	i, j := 0, 0
	for i < len(a.Entries) && j < len(b.Entries) {
		x, y := a.Entries[i], b.Entries[j]
		switch {
		case x.Actor < y.Actor:
			out.Entries = append(out.Entries, x)
			i++
		case x.Actor > y.Actor:
			out.Entries = append(out.Entries, y)
			j++
		default:
			out.Entries = append(out.Entries, CounterEntry{
				Actor: x.Actor,
				Inc:   max(x.Inc, y.Inc), Dec: max(x.Dec, y.Dec),
				IncBase: max(x.IncBase, y.IncBase), DecBase: max(x.DecBase, y.DecBase),
			})
			i++
			j++
		}
	}
	out.Entries = append(out.Entries, a.Entries[i:]...)
	out.Entries = append(out.Entries, b.Entries[j:]...)
	return out
}

// Descends reports whether c has seen everything o has.
func (c Counter) Descends(o Counter) bool {
	i := 0
	for _, y := range o.Entries {
		for i < len(c.Entries) && c.Entries[i].Actor < y.Actor {
			i++
		}
		if i == len(c.Entries) || c.Entries[i].Actor != y.Actor {
			if y != (CounterEntry{Actor: y.Actor}) {
				return false
			}
			continue
		}
		x := c.Entries[i]
		if x.Inc < y.Inc || x.Dec < y.Dec || x.IncBase < y.IncBase || x.DecBase < y.DecBase {
			return false
		}
	}
	return true
}

// Equal reports whether both counters are the same state.
func (c Counter) Equal(o Counter) bool {
	if len(c.Entries) != len(o.Entries) {
		return false
	}
	for i := range c.Entries {
		if c.Entries[i] != o.Entries[i] {
			return false
		}
	}
	return true
}
