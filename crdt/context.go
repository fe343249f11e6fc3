package crdt

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// A Dot names one write: the Counter-th event of Actor.
type Dot struct {
	Actor   uint64
	Counter uint64
}

// Less orders dots by actor, then counter.
func (d Dot) Less(o Dot) bool {
	if d.Actor != o.Actor {
		return d.Actor < o.Actor
	}
	return d.Counter < o.Counter
}

func (d Dot) String() string {
	return strconv.FormatUint(d.Actor, 16) + ":" + strconv.FormatUint(d.Counter, 10)
}

// A Context is a version vector: for each actor, the number of its events
// seen. It is sorted by actor, with no duplicate actors and no zero
// counters; the entries are Dots whose Counter means "all events up to".
// The nil Context has seen nothing.
type Context []Dot

// Get returns how many events of actor the context has seen.
func (c Context) Get(actor uint64) uint64 {
	i := sort.Search(len(c), func(i int) bool { return c[i].Actor >= actor })
	if i < len(c) && c[i].Actor == actor {
		return c[i].Counter
	}
	return 0
}

// Covers reports whether the context has seen the event d.
func (c Context) Covers(d Dot) bool { return d.Counter <= c.Get(d.Actor) }

// Descends reports whether c has seen every event that o has seen.
func (c Context) Descends(o Context) bool {
	i := 0
	for _, d := range o {
		for i < len(c) && c[i].Actor < d.Actor {
			i++
		}
		if i == len(c) || c[i].Actor != d.Actor || c[i].Counter < d.Counter {
			return false
		}
	}
	return true
}

// Equal reports whether both contexts have seen exactly the same events.
func (c Context) Equal(o Context) bool {
	if len(c) != len(o) {
		return false
	}
	for i := range c {
		if c[i] != o[i] {
			return false
		}
	}
	return true
}

// Join returns the least context that has seen everything a and b have.
func Join(a, b Context) Context {
	if len(b) == 0 || (len(a) == len(b) && &a[0] == &b[0]) {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make(Context, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].Actor < b[j].Actor:
			out = append(out, a[i])
			i++
		case a[i].Actor > b[j].Actor:
			out = append(out, b[j])
			j++
		default:
			out = append(out, Dot{a[i].Actor, max(a[i].Counter, b[j].Counter)})
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// With returns a copy of c that has seen events of d.Actor up to d.Counter
// (and keeps a higher count if c already has one).
func (c Context) With(d Dot) Context {
	i := sort.Search(len(c), func(i int) bool { return c[i].Actor >= d.Actor })
	if i < len(c) && c[i].Actor == d.Actor {
		out := append(Context(nil), c...)
		out[i].Counter = max(out[i].Counter, d.Counter)
		return out
	}
	out := make(Context, 0, len(c)+1)
	out = append(out, c[:i]...)
	out = append(out, d)
	return append(out, c[i:]...)
}

func (c Context) String() string {
	parts := make([]string, len(c))
	for i, d := range c {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// A token's first byte: tokenVersion for a context alone (Context.Token),
// tokenCounterVersion for a context followed by a counter (ReadToken).
const (
	tokenVersion        = 1
	tokenCounterVersion = 2
)

// ReadToken returns the token of what a read saw: the register's context
// and, if the key held counter entries, the counter, whose increments a
// delete or a write with the token then resets (and no others). Without
// counter entries it is ctx.Token().
func ReadToken(ctx Context, cnt Counter) string {
	if len(cnt.Entries) == 0 {
		return ctx.Token()
	}
	b := ctx.appendBinary([]byte{tokenCounterVersion})
	b = cnt.appendHigh(cnt.appendBinary(b))
	return base64.RawURLEncoding.EncodeToString(b)
}

// Bounds on the counter a token carries, which anyone can paste: a delete
// with it merges its entries in. A total near 2^128 would leave an actor
// (INFO shows a node's) no room for an increment, for good, and entries
// without number would grow the key's object. No read ever gets near
// either: 2^126 is 10^20 INCRBYs of a nanosecond timestamp, and a counter
// has an entry per node that wrote it.
const (
	maxTokenCounterHigh    = 1<<62 - 1
	maxTokenCounterEntries = 1024
)

// ParseReadToken reads what ReadToken wrote (a Context.Token too, with
// no counter). It rejects anything ReadToken could not have produced with
// an error wrapping ErrCorrupt, and a counter past the bounds above.
func ParseReadToken(tok string) (Context, Counter, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return nil, Counter{}, fmt.Errorf("%w: context token is not base64url: %v", ErrCorrupt, err)
	}
	if len(b) == 0 || (b[0] != tokenVersion && b[0] != tokenCounterVersion) {
		return nil, Counter{}, fmt.Errorf("%w: context token has unknown version", ErrCorrupt)
	}
	d := decoder{b: b[1:]}
	c := d.context()
	for _, dot := range c {
		if d.err == nil && dot.Counter > maxTokenEventCounter {
			d.fail("context token counter %d above %d", dot.Counter, uint64(maxTokenEventCounter))
		}
	}
	var cnt Counter
	if b[0] == tokenCounterVersion && d.err == nil {
		cnt = d.counter()
		if d.err == nil && len(d.b) > 0 && d.b[0] == tagCounterHigh {
			d.b = d.b[1:]
			d.counterHigh(&cnt)
		}
		d.checkCounter(cnt)
		if len(cnt.Entries) > maxTokenCounterEntries {
			d.fail("context token carries %d counter entries, over %d", len(cnt.Entries), maxTokenCounterEntries)
		}
		for _, e := range cnt.Entries {
			if max(e.IncHi, e.DecHi) > maxTokenCounterHigh {
				d.fail("context token carries a counter total over 2^126")
				break
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("context token has %d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, Counter{}, d.err
	}
	if ReadToken(c, cnt) != tok {
		// Decoded, but not as ReadToken writes it (an overlong number, a
		// line break the decoder skipped): not a token of ours.
		return nil, Counter{}, fmt.Errorf("%w: context token is not in canonical form", ErrCorrupt)
	}
	return c, cnt, nil
}

// Token returns the context in a printable form (URL-safe base64 without
// padding, so it survives nc, shells and URLs) that ParseToken reads back.
func (c Context) Token() string {
	return base64.RawURLEncoding.EncodeToString(c.appendBinary([]byte{tokenVersion}))
}

// MaxEventCounter is the most events of one actor a context may have seen.
// Decoding refuses more: a write's next dot is one past its context's
// counter, and a token carrying a counter near 2^64 (anyone can paste one)
// would make it wrap to a dot its own context does not cover, which every
// replica then refuses to decode. No actor gets near it: at a million
// writes a second it takes 146,000 years.
const MaxEventCounter = 1<<62 - 1

// maxTokenEventCounter is the most events of one actor a token may say it
// has seen: half of MaxEventCounter, so that the writes made on top of a
// pasted token have 2^61 events of room before their dots would pass
// MaxEventCounter (a token at MaxEventCounter itself made the next write's
// object one that nobody, its coordinator included, could decode).
const maxTokenEventCounter = 1<<61 - 1

// ParseToken reads a context from its Token form. It rejects anything that
// Token could not have produced with an error wrapping ErrCorrupt.
func ParseToken(tok string) (Context, error) {
	c, cnt, err := ParseReadToken(tok)
	if err == nil && len(cnt.Entries) > 0 {
		err = fmt.Errorf("%w: context token carries a counter", ErrCorrupt)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c Context) binaryLen() int {
	n := uvarintLen(uint64(len(c)))
	for _, d := range c {
		n += 8 + uvarintLen(d.Counter)
	}
	return n
}

func (c Context) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, d := range c {
		b = binary.LittleEndian.AppendUint64(b, d.Actor)
		b = binary.AppendUvarint(b, d.Counter)
	}
	return b
}
