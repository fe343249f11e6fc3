package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("crdt: corrupt encoding")

// Kind is what a key holds, as clients see it.
type Kind uint8

const (
	// KindNone is a key that does not exist (never written, or deleted).
	KindNone Kind = iota
	// KindRegister is a key holding one or more values (siblings).
	KindRegister
	// KindCounter is a key holding a counter.
	KindCounter
)

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindRegister:
		return "register"
	case KindCounter:
		return "counter"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// An Object is everything stored for one key: a register and a counter.
// Normally at most one of them is live; when a key was SET and INCRed
// concurrently (on two sides of a partition, or through replicas that had
// not yet seen the other write), both are: a type conflict. The register
// then wins Kind (GET shows it, INCR is WRONGTYPE), and VGET shows the
// counter too, so that neither write is hidden (see Conflicted).
type Object struct {
	Reg Register
	Cnt Counter
}

// Kind reports what the object holds.
func (o Object) Kind() Kind {
	switch {
	case o.Reg.Live():
		return KindRegister
	case o.Cnt.Live():
		return KindCounter
	}
	return KindNone
}

// Conflicted reports whether o holds a live register and a live counter.
func (o Object) Conflicted() bool { return o.Reg.Live() && o.Cnt.Live() }

// Merge returns the object that has seen both a and b, component-wise.
func Merge(a, b Object) Object {
	return Object{Reg: MergeRegisters(a.Reg, b.Reg), Cnt: MergeCounters(a.Cnt, b.Cnt)}
}

// Descends reports whether o has seen everything p holds: Merge(o, p)
// equals o.
func (o Object) Descends(p Object) bool {
	return o.Reg.Descends(p.Reg) && o.Cnt.Descends(p.Cnt)
}

// Equal reports whether both objects are the same state.
func (o Object) Equal(p Object) bool { return o.Reg.Equal(p.Reg) && o.Cnt.Equal(p.Cnt) }

// Delete returns the object as a delete coordinated by actor leaves it: the
// register drops what ctx covers (a tombstone keeping the joined context)
// and the counter is reset as this replica sees it.
func (o Object) Delete(actor uint64, ctx Context, now int64) Object {
	return Object{Reg: o.Reg.Update(actor, ctx, nil, true, now), Cnt: o.Cnt.Reset()}
}

// DeleteSeen returns the object as a delete of what a read saw leaves it
// (a delete with a context token): the register drops what ctx covers and
// the counter resets the increments of seen, and no others. Increments
// the read had not seen, here or on other replicas, survive. It also
// reports whether the delete deleted something: a sibling this replica
// held, or changes that counted here or in what the read saw (not those
// an earlier delete had reset already).
func (o Object) DeleteSeen(actor uint64, ctx Context, seen Counter, now int64) (Object, bool) {
	after := Object{Reg: o.Reg.Update(actor, ctx, nil, true, now), Cnt: o.Cnt.ResetSeen(seen)}
	return after, len(after.Reg.Siblings) < len(o.Reg.Siblings) || MergeCounters(o.Cnt, seen).resetBy(after.Cnt)
}

// Encoding:
//
//	version byte (1), then sections in ascending tag order, each at most once:
//	'C' counter: entry count, per entry: actor (8 bytes LE), then Inc, Dec,
//	    IncBase, DecBase (uvarints): the low 64 bits of each total
//	'H' the counter's high words, only if one is not 0: per entry of 'C',
//	    in its order, IncHi, DecHi, IncBaseHi, DecBaseHi (uvarints)
//	'R' register: context, sibling count, per sibling: actor (8 bytes LE),
//	    counter (uvarint), time (varint), value length (uvarint), value
//
// A context is a count, then per entry actor (8 bytes LE) and counter
// (uvarint). Empty sections are left out; new sections get new tags.
const (
	encodingVersion = 1
	tagRegister     = 'R'
	tagCounter      = 'C'
	tagCounterHigh  = 'H'
)

// AppendEncoding appends the binary form of o to b.
func (o Object) AppendEncoding(b []byte) []byte {
	b = append(b, encodingVersion)
	if len(o.Cnt.Entries) > 0 {
		b = append(b, tagCounter)
		b = o.Cnt.appendBinary(b)
		b = o.Cnt.appendHigh(b)
	}
	if len(o.Reg.Context) > 0 || len(o.Reg.Siblings) > 0 {
		b = append(b, tagRegister)
		b = o.Reg.Context.appendBinary(b)
		b = binary.AppendUvarint(b, uint64(len(o.Reg.Siblings)))
		for _, s := range o.Reg.Siblings {
			b = binary.LittleEndian.AppendUint64(b, s.Dot.Actor)
			b = binary.AppendUvarint(b, s.Dot.Counter)
			b = binary.AppendVarint(b, s.Time)
			b = binary.AppendUvarint(b, uint64(len(s.Value)))
			b = append(b, s.Value...)
		}
	}
	return b
}

// appendBinary appends the counter's entries as its section of an
// object's encoding holds them (decoder.counter reads them back).
func (c Counter) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(c.Entries)))
	for _, e := range c.Entries {
		b = binary.LittleEndian.AppendUint64(b, e.Actor)
		b = binary.AppendUvarint(b, e.Inc)
		b = binary.AppendUvarint(b, e.Dec)
		b = binary.AppendUvarint(b, e.IncBase)
		b = binary.AppendUvarint(b, e.DecBase)
	}
	return b
}

// wide reports whether a total of some entry passes 64 bits.
func (c Counter) wide() bool {
	for _, e := range c.Entries {
		if e.wide() {
			return true
		}
	}
	return false
}

// appendHigh appends the 'H' section, the high words of the counter's
// totals (decoder.counterHigh reads them back), if one is not 0.
func (c Counter) appendHigh(b []byte) []byte {
	if !c.wide() {
		return b
	}
	b = append(b, tagCounterHigh)
	for _, e := range c.Entries {
		b = binary.AppendUvarint(b, e.IncHi)
		b = binary.AppendUvarint(b, e.DecHi)
		b = binary.AppendUvarint(b, e.IncBaseHi)
		b = binary.AppendUvarint(b, e.DecBaseHi)
	}
	return b
}

// Encode returns the binary form of o, in one allocation.
func (o Object) Encode() []byte { return o.AppendEncoding(make([]byte, 0, o.EncodedLen())) }

// EncodedLen is the length of o's encoding, computed without encoding.
func (o Object) EncodedLen() int {
	n := 1
	if len(o.Cnt.Entries) > 0 {
		n += 1 + uvarintLen(uint64(len(o.Cnt.Entries)))
		for _, e := range o.Cnt.Entries {
			n += 8 + uvarintLen(e.Inc) + uvarintLen(e.Dec) + uvarintLen(e.IncBase) + uvarintLen(e.DecBase)
		}
		if o.Cnt.wide() {
			n++
			for _, e := range o.Cnt.Entries {
				n += uvarintLen(e.IncHi) + uvarintLen(e.DecHi) + uvarintLen(e.IncBaseHi) + uvarintLen(e.DecBaseHi)
			}
		}
	}
	if len(o.Reg.Context) > 0 || len(o.Reg.Siblings) > 0 {
		n += 1 + o.Reg.Context.binaryLen() + uvarintLen(uint64(len(o.Reg.Siblings)))
		for _, s := range o.Reg.Siblings {
			t := uint64(s.Time) << 1 // zig-zag, as binary.AppendVarint
			if s.Time < 0 {
				t = ^t
			}
			n += 8 + uvarintLen(s.Dot.Counter) + uvarintLen(t) + uvarintLen(uint64(len(s.Value))) + len(s.Value)
		}
	}
	return n
}

func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// Decode reads an object from its binary form. Sibling values alias b. It
// checks every invariant the encoder guarantees (sorted, unique, covered
// dots; counter bases not above totals) and fails with an error wrapping
// ErrCorrupt on anything else.
func Decode(b []byte) (Object, error) {
	var o Object
	if len(b) == 0 {
		return o, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if b[0] != encodingVersion {
		return o, fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[0])
	}
	d := decoder{b: b[1:]}
	last := byte(0)
	for d.err == nil && len(d.b) > 0 {
		tag := d.b[0]
		d.b = d.b[1:]
		if tag <= last {
			d.fail("section %q out of order", tag)
			break
		}
		last = tag
		switch tag {
		case tagRegister:
			o.Reg = d.register()
		case tagCounter:
			o.Cnt = d.counter()
		case tagCounterHigh:
			d.counterHigh(&o.Cnt)
		default:
			d.fail("unknown section %q", tag)
		}
	}
	d.checkCounter(o.Cnt)
	if d.err != nil {
		return Object{}, d.err
	}
	return o, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad or truncated uvarint")
		return 0
	}
	if n != uvarintLen(v) {
		d.fail("overlong uvarint") // the encoder writes the shortest
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fixed64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// count reads a length prefix for items of at least minSize bytes each and
// refuses one that the remaining input cannot hold, so hostile input never
// drives a large allocation.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds remaining input", n)
		return 0
	}
	return int(n)
}

func (d *decoder) context() Context {
	n := d.count(9)
	if n == 0 {
		return nil
	}
	c := make(Context, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		dot := Dot{Actor: d.fixed64(), Counter: d.uvarint()}
		if d.err == nil && dot.Counter == 0 {
			d.fail("context entry with zero counter")
		}
		if d.err == nil && dot.Counter > MaxEventCounter {
			d.fail("context counter %d above %d", dot.Counter, uint64(MaxEventCounter))
		}
		if d.err == nil && i > 0 && dot.Actor <= c[i-1].Actor {
			d.fail("context actors not strictly ascending")
		}
		c = append(c, dot)
	}
	return c
}

func (d *decoder) register() Register {
	var r Register
	r.Context = d.context()
	n := d.count(11)
	if d.err == nil && n == 0 && len(r.Context) == 0 {
		d.fail("empty register section") // AppendEncoding writes none
	}
	if n > 0 {
		r.Siblings = make([]Sibling, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		s := Sibling{Dot: Dot{Actor: d.fixed64(), Counter: d.uvarint()}, Time: d.varint()}
		size := d.uvarint()
		if d.err != nil {
			break
		}
		if size > uint64(len(d.b)) {
			d.fail("value of %d bytes exceeds remaining input", size)
			break
		}
		s.Value, d.b = d.b[:size:size], d.b[size:]
		if s.Dot.Counter == 0 || !r.Context.Covers(s.Dot) {
			d.fail("sibling dot %v not covered by context %v", s.Dot, r.Context)
		}
		if i > 0 && !r.Siblings[i-1].Dot.Less(s.Dot) {
			d.fail("sibling dots not strictly ascending")
		}
		r.Siblings = append(r.Siblings, s)
	}
	return r
}

func (d *decoder) counter() Counter {
	var c Counter
	n := d.count(12)
	if n == 0 {
		d.fail("empty counter section")
		return c
	}
	c.Entries = make([]CounterEntry, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		e := CounterEntry{Actor: d.fixed64(), Inc: d.uvarint(), Dec: d.uvarint(), IncBase: d.uvarint(), DecBase: d.uvarint()}
		if d.err != nil {
			break
		}
		if i > 0 && e.Actor <= c.Entries[i-1].Actor {
			d.fail("counter actors not strictly ascending")
		}
		c.Entries = append(c.Entries, e)
	}
	return c
}

// counterHigh reads the 'H' section into c's entries, which the 'C'
// section read.
func (d *decoder) counterHigh(c *Counter) {
	if len(c.Entries) == 0 {
		d.fail("counter high words without a counter")
		return
	}
	wide := false
	for i := range c.Entries {
		e := &c.Entries[i]
		e.IncHi, e.DecHi, e.IncBaseHi, e.DecBaseHi = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		wide = wide || e.wide()
	}
	if d.err == nil && !wide {
		d.fail("counter high words all 0") // left out when they are
	}
}

// checkCounter checks c's entries once whole: no base above its total.
func (d *decoder) checkCounter(c Counter) {
	for _, e := range c.Entries {
		if !e.valid() {
			d.fail("counter base above total for actor %x", e.Actor)
			return
		}
	}
}
