package crdt

import "math/bits"

// u128 is an unsigned 128-bit number: one of a counter entry's running
// totals.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func max128(a, b u128) u128 {
	if a.less(b) {
		return b
	}
	return a
}

// sub returns a - b, for a >= b.
func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - borrow, lo}
}

// add returns a + d, and whether that passed 2^128.
func (a u128) add(d uint64) (u128, bool) {
	lo, carry := bits.Add64(a.lo, d, 0)
	hi, carry := bits.Add64(a.hi, 0, carry)
	return u128{hi, lo}, carry != 0
}

// u192 sums u128s: a counter's increments over every entry, which may
// pass 2^128 (little-endian words).
type u192 [3]uint64

func (s *u192) add(v u128) {
	var c uint64
	s[0], c = bits.Add64(s[0], v.lo, 0)
	s[1], c = bits.Add64(s[1], v.hi, c)
	s[2] += c
}

func (e CounterEntry) inc() u128     { return u128{e.IncHi, e.Inc} }
func (e CounterEntry) dec() u128     { return u128{e.DecHi, e.Dec} }
func (e CounterEntry) incBase() u128 { return u128{e.IncBaseHi, e.IncBase} }
func (e CounterEntry) decBase() u128 { return u128{e.DecBaseHi, e.DecBase} }

func (e *CounterEntry) setInc(v u128)     { e.IncHi, e.Inc = v.hi, v.lo }
func (e *CounterEntry) setDec(v u128)     { e.DecHi, e.Dec = v.hi, v.lo }
func (e *CounterEntry) setIncBase(v u128) { e.IncBaseHi, e.IncBase = v.hi, v.lo }
func (e *CounterEntry) setDecBase(v u128) { e.DecBaseHi, e.DecBase = v.hi, v.lo }

// wide reports whether a total of e passes 64 bits.
func (e CounterEntry) wide() bool { return e.IncHi|e.DecHi|e.IncBaseHi|e.DecBaseHi != 0 }

// atLeast reports whether each of e's totals is at least o's.
func (e CounterEntry) atLeast(o CounterEntry) bool {
	return !e.inc().less(o.inc()) && !e.dec().less(o.dec()) && !e.incBase().less(o.incBase()) && !e.decBase().less(o.decBase())
}

// valid reports whether e's bases are not above its totals.
func (e CounterEntry) valid() bool { return !e.inc().less(e.incBase()) && !e.dec().less(e.decBase()) }
