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
// (IncBase <= Inc, DecBase <= Dec), which no longer count. The totals
// only grow (a delete records them rather than lower them, so that merges
// stay sound), so they are 128-bit numbers: the Hi fields hold their high
// 64 bits. (64 bits ran out after about ten pairs of INCRBY and DECRBY of
// a nanosecond timestamp.)
type CounterEntry struct {
	Actor                              uint64
	Inc, Dec                           uint64
	IncBase, DecBase                   uint64
	IncHi, DecHi, IncBaseHi, DecBaseHi uint64
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
	// Sums in 192 bits: added and subtracted, each up to 2^128 an actor.
	var inc, dec u192
	for _, e := range c.Entries {
		inc.add(e.inc().sub(e.incBase()))
		dec.add(e.dec().sub(e.decBase()))
	}
	if inc[1]|inc[2]|dec[1]|dec[2] == 0 && inc[0] <= math.MaxInt64 && dec[0] <= math.MaxInt64 {
		return int64(inc[0]) - int64(dec[0]) // the usual case: no overflow possible
	}
	var net u192 // inc - dec, two's complement
	var borrow uint64
	net[0], borrow = bits.Sub64(inc[0], dec[0], 0)
	net[1], borrow = bits.Sub64(inc[1], dec[1], borrow)
	net[2], _ = bits.Sub64(inc[2], dec[2], borrow)
	switch {
	case int64(net[2]) < 0: // negative
		if net[2] == math.MaxUint64 && net[1] == math.MaxUint64 && net[0] >= 1<<63 {
			return int64(net[0])
		}
		return math.MinInt64
	case net[2] == 0 && net[1] == 0 && net[0] <= math.MaxInt64:
		return int64(net[0])
	}
	return math.MaxInt64
}

// Live reports whether the counter exists: some actor changed it since the
// last delete it had seen (a counter taken back to 0 by DECR still exists).
func (c Counter) Live() bool {
	for _, e := range c.Entries {
		if e.inc() != e.incBase() || e.dec() != e.decBase() {
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
// were). They are 128-bit numbers, which no use runs out of; a counter
// written by a build whose totals were 64-bit may have saturated an
// actor's entry, and Add then goes on in an entry of its own under a
// stand-in actor id derived from actor (standIn), as those builds did:
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
// holds 2^128 of increments and as much of decrements.
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
		v, over := e.inc().add(uint64(delta))
		if over {
			return c, false
		}
		e.setInc(v)
	} else {
		d := uint64(-(delta + 1)) + 1 // |delta| without overflowing at MinInt64
		v, over := e.dec().add(d)
		if over {
			return c, false
		}
		e.setDec(v)
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
		e.IncBaseHi, e.DecBaseHi = e.IncHi, e.DecHi
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
// that counted in c: some actor's base rose.
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
		if e.incBase().less(a.incBase()) || e.decBase().less(a.decBase()) {
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
		if !c.Entries[i].atLeast(y) {
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
			e := CounterEntry{Actor: x.Actor}
			e.setInc(max128(x.inc(), y.inc()))
			e.setDec(max128(x.dec(), y.dec()))
			e.setIncBase(max128(x.incBase(), y.incBase()))
			e.setDecBase(max128(x.decBase(), y.decBase()))
			out.Entries = append(out.Entries, e)
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
		if !c.Entries[i].atLeast(y) {
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
