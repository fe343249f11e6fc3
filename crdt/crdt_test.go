package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"

	"pgregory.net/rapid"
)

// history runs a random sequence of client operations against a few
// replicas of one key (writes with and without contexts, deletes, counter
// changes, replica syncs) and returns every state any replica passed
// through. States built this way are the ones the store can really hold.
type history struct {
	actors []uint64
	reps   []Object
	states []Object
	total  int64 // sum of every counter delta applied, for convergence checks
}

func genHistory(t *rapid.T, withDeletes bool) *history {
	n := rapid.IntRange(1, 4).Draw(t, "replicas")
	h := &history{reps: make([]Object, n)}
	seen := map[uint64]bool{}
	for len(h.actors) < n {
		a := rapid.Uint64().Draw(t, "actor")
		if !seen[a] {
			seen[a] = true
			h.actors = append(h.actors, a)
		}
	}
	ops := rapid.IntRange(0, 40).Draw(t, "ops")
	for k := 0; k < ops; k++ {
		i := rapid.IntRange(0, n-1).Draw(t, "at")
		j := rapid.IntRange(0, n-1).Draw(t, "from")
		now := rapid.Int64Range(0, 20).Draw(t, "now")
		// The client's context: the replica's own (no token), what another
		// replica showed it (a read elsewhere), or none at all (blind write).
		ctx := h.reps[i].Reg.Context
		switch rapid.IntRange(0, 2).Draw(t, "ctx") {
		case 1:
			ctx = h.reps[j].Reg.Context
		case 2:
			ctx = nil
		}
		cur := h.reps[i]
		switch op := rapid.IntRange(0, 4).Draw(t, "op"); {
		case op == 0 || (op == 3 && !withDeletes):
			v := rapid.SliceOfN(rapid.Byte(), 0, 3).Draw(t, "value")
			cur.Reg = cur.Reg.Update(h.actors[i], ctx, v, false, now)
		case op == 1:
			d := rapid.Int64Range(-5, 5).Draw(t, "delta")
			c, err := cur.Cnt.Add(h.actors[i], d)
			if err != nil {
				t.Fatalf("Add(%d): %v", d, err)
			}
			cur.Cnt = c
			h.total += d
		case op == 2:
			cur = Merge(cur, h.reps[j])
		case op == 3:
			cur = cur.Delete(h.actors[i], ctx, now)
		case op == 4:
			h.reps[j] = Merge(h.reps[j], cur)
			h.states = append(h.states, h.reps[j])
		}
		h.reps[i] = cur
		h.states = append(h.states, cur)
	}
	h.states = append(h.states, Object{})
	return h
}

func (h *history) draw(t *rapid.T, label string) Object {
	return h.states[rapid.IntRange(0, len(h.states)-1).Draw(t, label)]
}

// TestMergeShortcutsAgree: MergeRegisters' shortcuts (one side empty, both
// equal) give exactly what the general merge gives.
func TestMergeShortcutsAgree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		a, b := h.draw(t, "a"), h.draw(t, "b")
		// One side newer than the other, as a replica sent a copy of the
		// key's next write sees it: the merge, and a later write on top.
		ab := Merge(a, b)
		next := ab
		next.Reg = next.Reg.Update(h.actors[0], ab.Reg.Context, []byte("n"), false, 99)
		if c, err := next.Cnt.Add(h.actors[0], 1); err == nil {
			next.Cnt = c
		}
		for _, p := range [][2]Object{{a, b}, {a, a}, {{}, a}, {a, {}}, {b, a}, {a, ab}, {ab, b}, {ab, next}, {next, a}} {
			if got, want := MergeRegisters(p[0].Reg, p[1].Reg), mergeRegisters(p[0].Reg, p[1].Reg); !got.Equal(want) {
				t.Fatalf("MergeRegisters(%v, %v) = %v, the general merge gives %v", p[0].Reg, p[1].Reg, got, want)
			}
			if got, want := MergeCounters(p[0].Cnt, p[1].Cnt), mergeCounters(p[0].Cnt, p[1].Cnt); !got.Equal(want) {
				t.Fatalf("MergeCounters(%v, %v) = %v, the general merge gives %v", p[0].Cnt, p[1].Cnt, got, want)
			}
		}
	})
}

// An entry of all zeros (in a decoded object, say) is one Descends lets
// the other side lack, but a merge keeps: the counters' shortcut must not
// drop it.
func TestCounterShortcutKeepsZeroEntries(t *testing.T) {
	a := Counter{Entries: []CounterEntry{{Actor: 1}}}
	b := Counter{Entries: []CounterEntry{{Actor: 2, Inc: 5}}}
	for _, p := range [][2]Counter{{a, b}, {b, a}} {
		if got, want := MergeCounters(p[0], p[1]), mergeCounters(p[0], p[1]); !got.Equal(want) {
			t.Fatalf("MergeCounters(%v, %v) = %v, the general merge gives %v", p[0], p[1], got, want)
		}
	}
}

func TestMergeIsASemilattice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		a, b, c := h.draw(t, "a"), h.draw(t, "b"), h.draw(t, "c")
		if ab, ba := Merge(a, b), Merge(b, a); !ab.Equal(ba) {
			t.Fatalf("not commutative:\n a=%v\n b=%v\n ab=%v\n ba=%v", a, b, ab, ba)
		}
		if l, r := Merge(Merge(a, b), c), Merge(a, Merge(b, c)); !l.Equal(r) {
			t.Fatalf("not associative:\n (ab)c=%v\n a(bc)=%v", l, r)
		}
		if aa := Merge(a, a); !aa.Equal(a) {
			t.Fatalf("not idempotent: %v merged with itself is %v", a, aa)
		}
		m := Merge(a, b)
		if !m.Descends(a) || !m.Descends(b) {
			t.Fatalf("merge %v does not descend both inputs %v, %v", m, a, b)
		}
	})
}

// model is a brute-force register: the context spelled out as the set of
// every dot it has seen, and the live dots with their values.
type model struct {
	seen map[Dot]bool
	live map[Dot]string
}

func toModel(r Register) model {
	m := model{seen: map[Dot]bool{}, live: map[Dot]string{}}
	for _, d := range r.Context {
		for c := uint64(1); c <= d.Counter; c++ {
			m.seen[Dot{d.Actor, c}] = true
		}
	}
	for _, s := range r.Siblings {
		m.live[s.Dot] = string(s.Value)
	}
	return m
}

func modelMerge(a, b model) model {
	m := model{seen: map[Dot]bool{}, live: map[Dot]string{}}
	for d := range a.seen {
		m.seen[d] = true
	}
	for d := range b.seen {
		m.seen[d] = true
	}
	for d, v := range a.live {
		if _, ok := b.live[d]; ok || !b.seen[d] {
			m.live[d] = v
		}
	}
	for d, v := range b.live {
		if _, ok := a.live[d]; ok || !a.seen[d] {
			m.live[d] = v
		}
	}
	return m
}

func (m model) equal(o model) bool {
	return fmt.Sprint(m.seen) == fmt.Sprint(o.seen) && fmt.Sprint(m.live) == fmt.Sprint(o.live)
}

func TestRegisterAgreesWithBruteForceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		a, b := h.draw(t, "a").Reg, h.draw(t, "b").Reg
		want := modelMerge(toModel(a), toModel(b))
		if got := toModel(MergeRegisters(a, b)); !got.equal(want) {
			t.Fatalf("merge of %v and %v: got %v, model says %v", a, b, got, want)
		}
		// Dominance: a descends b exactly when merging b into a changes nothing.
		wantDesc := modelMerge(toModel(a), toModel(b)).equal(toModel(a))
		if got := a.Descends(b); got != wantDesc {
			t.Fatalf("%v.Descends(%v) = %v, brute force says %v", a, b, got, wantDesc)
		}
		if got, merged := a.Descends(b), MergeRegisters(a, b).Equal(a); got != merged {
			t.Fatalf("%v.Descends(%v) = %v but merge-equals = %v", a, b, got, merged)
		}
	})
}

func TestCounterDescendsAgreesWithMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		a, b := h.draw(t, "a").Cnt, h.draw(t, "b").Cnt
		if got, want := a.Descends(b), MergeCounters(a, b).Equal(a); got != want {
			t.Fatalf("%v.Descends(%v) = %v, merge says %v", a, b, got, want)
		}
	})
}

func TestSyncNeverDropsUnseenValues(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		a, b := h.draw(t, "a"), h.draw(t, "b")
		m := Merge(a, b)
		for _, pair := range [][2]Object{{a, b}, {b, a}} {
			for _, s := range pair[1].Reg.Siblings {
				if pair[0].Reg.Context.Covers(s.Dot) {
					continue
				}
				if !hasSibling(m.Reg, s) {
					t.Fatalf("sibling %v (unseen by %v) lost in merge %v", s, pair[0].Reg, m.Reg)
				}
			}
		}
	})
}

func hasSibling(r Register, s Sibling) bool {
	for _, x := range r.Siblings {
		if sameSibling(x, s) {
			return true
		}
	}
	return false
}

func TestWriteWithContextDropsExactlyWhatItCovers(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		r := h.draw(t, "replica").Reg
		ctx := h.draw(t, "client").Reg.Context
		actor := h.actors[rapid.IntRange(0, len(h.actors)-1).Draw(t, "actor")]
		w := r.Update(actor, ctx, []byte("new"), false, 7)
		for _, s := range r.Siblings {
			if kept := hasSibling(w, s); kept == ctx.Covers(s.Dot) {
				t.Fatalf("sibling %v kept=%v with context %v", s, kept, ctx)
			}
		}
		if !w.Context.Descends(r.Context) || !w.Context.Descends(ctx) {
			t.Fatalf("write context %v lost history of %v or %v", w.Context, r.Context, ctx)
		}
		n, _ := w.Newest()
		if !bytes.Equal(n.Value, []byte("new")) && n.Time < 7 {
			// Only a sibling written no earlier than the new one may show
			// first (at the same time, the greater dot wins).
			t.Fatalf("newest after write is %v", n)
		}
		if r.Context.Covers(n.Dot) && ctx.Covers(n.Dot) {
			t.Fatalf("new dot %v reuses a dot already seen", n.Dot)
		}
	})
}

func TestCountersConvergeToExactTotal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, false)
		var all Object
		for _, r := range h.reps {
			all = Merge(all, r)
		}
		if got := all.Cnt.Value(); got != h.total {
			t.Fatalf("converged counter = %d, sum of increments = %d", got, h.total)
		}
	})
}

func TestEncodingRoundTrips(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		o := h.draw(t, "object")
		enc := o.Encode()
		got, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(%v)): %v", o, err)
		}
		if !got.Equal(o) || !bytes.Equal(got.Encode(), enc) {
			t.Fatalf("round trip changed %v into %v", o, got)
		}
		tok := o.Reg.Context.Token()
		ctx, err := ParseToken(tok)
		if err != nil || !ctx.Equal(o.Reg.Context) {
			t.Fatalf("token %q of %v parsed as %v, %v", tok, o.Reg.Context, ctx, err)
		}
	})
}

func TestDecodeRejectsTruncation(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		o := h.draw(t, "object")
		// Each section alone: any cut inside it must fail.
		for _, part := range []Object{{Reg: o.Reg}, {Cnt: o.Cnt}} {
			enc := part.Encode()
			for n := 2; n < len(enc); n++ {
				if _, err := Decode(enc[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Decode of %d/%d bytes of %x: err = %v, want ErrCorrupt", n, len(enc), enc, err)
				}
			}
		}
	})
}

func TestDecodeRejectsBadInput(t *testing.T) {
	valid := Object{Reg: Register{}.Update(1, nil, []byte("v"), false, 1)}.Encode()
	for name, in := range map[string][]byte{
		"empty":              {},
		"unknown version":    {9},
		"unknown section":    {1, 'Z'},
		"sections reordered": append(append([]byte{}, valid...), 'C', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0),
		"huge count":         {1, 'R', 0xff, 0xff, 0xff, 0xff, 0x0f},
		"empty counter":      {1, 'C', 0},
		"base above total":   {1, 'C', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0},
		"zero context entry": {1, 'R', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"uncovered sibling":  {1, 'R', 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		"value past end":     {1, 'R', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 50, 'x'},
	} {
		if _, err := Decode(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode(%x) err = %v, want ErrCorrupt", name, in, err)
		}
	}
	for _, tok := range []string{"", "!!!", "AA", "Ag", "AQE", "AQEBAAAAAAAAAAA", "AQA=", "AQAA"} {
		if _, err := ParseToken(tok); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseToken(%q) err = %v, want ErrCorrupt", tok, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := Register{}.Update(1, nil, []byte("hello"), false, 1)
	r = MergeRegisters(r, Register{}.Update(2, nil, []byte("world"), false, 2))
	c, _ := Counter{}.Add(3, 5)
	f.Add(Object{Reg: r, Cnt: c}.Encode())
	f.Add(Object{Reg: r.Update(1, r.Context, nil, true, 3)}.Encode())
	f.Add([]byte{1})
	f.Add([]byte{1, 'R', 0xff})
	wide, _ := Counter{}.Add(4, math.MaxInt64)
	for range 3 {
		wide, _ = wide.Add(4, math.MaxInt64)
		wide, _ = wide.Add(4, -math.MaxInt64)
	}
	f.Add(Object{Reg: r, Cnt: MergeCounters(c, wide)}.Encode())
	f.Add([]byte{1, 'C', 1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 'H', 0, 0, 0, 0}) // high words all 0
	f.Add([]byte{1, 'C', 1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 6, 0, 'H', 1, 0, 0, 0}) // base under the total once wide
	f.Add([]byte{1, 'C', 1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 'H', 0, 0, 1, 0}) // base above the total
	f.Add([]byte{1, 'H', 0, 0, 0, 1})                                             // high words without a counter
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := Decode(o.Encode())
		if err != nil || !again.Equal(o) {
			t.Fatalf("re-encoding %v gives %v, %v", o, again, err)
		}
		_ = o.Kind()
		_ = Merge(o, o)
	})
}

func TestConcurrentWritesBecomeSiblingsAndContextResolves(t *testing.T) {
	a := Register{}.Update(1, nil, []byte("x"), false, 10)
	b := Register{}.Update(2, nil, []byte("y"), false, 20)
	m := MergeRegisters(a, b)
	if len(m.Siblings) != 2 {
		t.Fatalf("concurrent writes: %v, want 2 siblings", m)
	}
	if n, _ := m.Newest(); string(n.Value) != "y" {
		t.Fatalf("newest = %q, want the later write y", n.Value)
	}
	// A client read m, writes z with m's context through replica 1.
	w := a.Update(1, m.Context, []byte("z"), false, 30)
	if got := MergeRegisters(w, b); len(got.Siblings) != 1 || string(got.Siblings[0].Value) != "z" {
		t.Fatalf("context write did not resolve siblings: %v", got)
	}
	// A delete that saw only x leaves y, concurrent with it, alive.
	d := a.Update(1, a.Context, nil, true, 40)
	if got := MergeRegisters(d, b); len(got.Siblings) != 1 || string(got.Siblings[0].Value) != "y" {
		t.Fatalf("delete of x merged with concurrent y: %v", got)
	}
	// A late copy of x does not resurrect after the delete.
	if got := MergeRegisters(d, a); got.Live() {
		t.Fatalf("old write resurrected after delete: %v", got)
	}
}

func TestCounterResetKeepsConcurrentIncrements(t *testing.T) {
	x, _ := Counter{}.Add(1, 5)
	y := MergeCounters(x, Counter{})
	y, _ = y.Add(2, 3) // replica 2 increments, concurrent with the delete at 1
	deleted := x.Reset()
	if deleted.Live() || deleted.Value() != 0 {
		t.Fatalf("reset counter: live=%v value=%d", deleted.Live(), deleted.Value())
	}
	m := MergeCounters(deleted, y)
	if m.Value() != 3 || !m.Live() {
		t.Fatalf("after merge: value=%d live=%v, want 3, true", m.Value(), m.Live())
	}
	zero, _ := x.Add(1, -5)
	if !zero.Live() || zero.Value() != 0 {
		t.Fatalf("counter taken back to 0 must still exist")
	}
}

func TestCounterOverflow(t *testing.T) {
	c, err := Counter{}.Add(1, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(1, 1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("MaxInt64+1: err = %v", err)
	}
	c, err = Counter{}.Add(1, math.MinInt64)
	if err != nil || c.Value() != math.MinInt64 {
		t.Fatalf("MinInt64: %v %v", c.Value(), err)
	}
	if _, err := c.Add(1, -1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("MinInt64-1: err = %v", err)
	}
}

// TestCounterRunningTotalsDoNotWedgeIt: an actor's running totals only
// grow, and INCRBY and DECRBY of the largest int64, twice, pass 2^64 with
// the value at 0; Add refused every increment from then on, through DEL
// too (a delete only records the totals). Now the actor goes on under a
// stand-in entry, the value stays exact, and merges with the copies
// before still agree.
func TestCounterRunningTotalsDoNotWedgeIt(t *testing.T) {
	c := Counter{}
	var copies []Counter
	var err error
	for i := range 6 {
		if c, err = c.Add(1, math.MaxInt64); err != nil {
			t.Fatalf("round %d, INCRBY max: %v", i, err)
		}
		if c.Value() != math.MaxInt64 {
			t.Fatalf("round %d: value %d after INCRBY max", i, c.Value())
		}
		copies = append(copies, c)
		if c, err = c.Add(1, -math.MaxInt64); err != nil {
			t.Fatalf("round %d, DECRBY max: %v", i, err)
		}
		if c.Value() != 0 {
			t.Fatalf("round %d: value %d after DECRBY max", i, c.Value())
		}
		copies = append(copies, c)
	}
	if len(c.Entries) != 1 || c.Entries[0].IncHi == 0 {
		t.Fatalf("entries %v: want one entry whose totals passed 2^64", c.Entries)
	}
	if d, err := Decode(Object{Cnt: c}.Encode()); err != nil || !d.Cnt.Equal(c) {
		t.Fatalf("a counter past 2^64 encodes and decodes as %v, %v; want %v", d.Cnt, err, c)
	}
	c = c.Reset() // DEL
	if c, err = c.Add(1, 5); err != nil || c.Value() != 5 {
		t.Fatalf("INCRBY 5 after DEL: %d, %v", c.Value(), err)
	}
	// A replica holding any older copy, merged with the newest, agrees.
	for i, old := range copies {
		if m := MergeCounters(old, c); m.Value() != 5 || !m.Equal(c) {
			t.Fatalf("merge of copy %d with the newest: %d, want 5", i, m.Value())
		}
	}
	// Other actors' entries are left alone.
	d, _ := Counter{}.Add(2, 7)
	m := MergeCounters(c, d)
	if m.Value() != 12 {
		t.Fatalf("merged with actor 2's 7: %d, want 12", m.Value())
	}
	if m, err = m.Add(1, 1); err != nil || m.Value() != 13 {
		t.Fatalf("INCR after the merge: %d, %v", m.Value(), err)
	}
}

func TestEncodedLenIsExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		o := h.draw(t, "object")
		if got, want := o.EncodedLen(), len(o.AppendEncoding(nil)); got != want {
			t.Fatalf("encodedLen = %d, encoding is %d bytes: %v", got, want, o)
		}
		// Times of any sign, including the extremes.
		tm := rapid.Int64().Draw(t, "time")
		r := o.Reg.Update(7, nil, []byte("v"), false, tm)
		if p := (Object{Reg: r}); p.EncodedLen() != len(p.AppendEncoding(nil)) {
			t.Fatalf("time %d: encodedLen %d != %d", tm, p.EncodedLen(), len(p.AppendEncoding(nil)))
		}
	})
}

func TestWithAndJoinAgree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t, true)
		c := h.draw(t, "object").Reg.Context
		d := Dot{Actor: h.actors[rapid.IntRange(0, len(h.actors)-1).Draw(t, "actor")], Counter: rapid.Uint64Range(1, 50).Draw(t, "counter")}
		if got, want := c.With(d), Join(c, Context{d}); !got.Equal(want) {
			t.Fatalf("%v.With(%v) = %v, Join gives %v", c, d, got, want)
		}
		before := append(Context(nil), c...)
		_ = c.With(d)
		if !c.Equal(before) {
			t.Fatalf("With modified its receiver")
		}
	})
}

// FuzzParseToken: a context token comes from a user (pasted into nc, sent
// over HTTP). Any string is either refused with ErrCorrupt or parses to a
// context whose own token parses back to it.
func FuzzParseToken(f *testing.F) {
	r := Register{}.Update(1, nil, []byte("hello"), false, 1)
	r = MergeRegisters(r, Register{}.Update(2, nil, []byte("world"), false, 2))
	f.Add(r.Context.Token())
	f.Add(Register{}.Context.Token())
	c, _ := Counter{}.Add(1, 5)
	c, _ = c.Add(2, -3)
	f.Add(ReadToken(r.Context, c))
	f.Add(ReadToken(nil, c.Reset()))
	for _, tok := range []string{"", "!!!", "AA", "AQE", "AQA=", "AQAA", "AQEBAAAAAAAAAAA", " AQE", "AQE\n", "AgA", "AgAA", "AgABAQAAAAAAAAAFAAAA", "AgABAQAAAAAAAAAFAAYA"} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		ctx, cnt, err := ParseReadToken(tok)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseReadToken(%q): error %v does not wrap ErrCorrupt", tok, err)
			}
			return
		}
		again, againCnt, err := ParseReadToken(ReadToken(ctx, cnt))
		if err != nil || !again.Equal(ctx) || !againCnt.Equal(cnt) {
			t.Fatalf("token %q parsed as %v %v, whose token parses as %v %v, %v", tok, ctx, cnt, again, againCnt, err)
		}
		if _, err := ParseToken(tok); (err == nil) != (len(cnt.Entries) == 0) {
			t.Fatalf("ParseToken(%q) = %v, with a counter of %d entries", tok, err, len(cnt.Entries))
		}
		// A write or a delete with it must not panic, and must keep
		// the counter's invariants (bases not above totals).
		_ = r.Update(3, ctx, []byte("x"), false, 4)
		o, _ := Object{Reg: r, Cnt: c}.DeleteSeen(3, ctx, cnt, 5)
		if _, err := Decode(o.Encode()); err != nil {
			t.Fatalf("a delete with token %q left an object that does not decode: %v", tok, err)
		}
	})
}

// TestResetSeenResetsWhatWasSeenOnly: a delete of what a read saw resets
// the increments the read counted, merged in if this replica lacked them,
// and keeps every later one.
func TestResetSeenResetsWhatWasSeenOnly(t *testing.T) {
	read, _ := Counter{}.Add(1, 2)
	read, _ = read.Add(2, 4) // the read saw 2 by actor 1 and 4 by actor 2
	here, _ := Counter{}.Add(1, 2)
	here, _ = here.Add(1, 3) // this replica: actor 1's 2 and 3 more, none of actor 2's
	here, _ = here.Add(3, -1)
	got := here.ResetSeen(read)
	if v := got.Value(); v != 3-1 {
		t.Fatalf("after resetting what the read saw: %d, want 2 (actor 1's 3 later, actor 3's -1)", v)
	}
	if again := MergeCounters(got, read); again.Value() != 2 {
		t.Fatalf("merging the read's counter back in brought its increments back: %d", again.Value())
	}
	if v := here.ResetSeen(Counter{}).Value(); v != here.Value() {
		t.Fatalf("resetting an empty read changed the counter: %d, want %d", v, here.Value())
	}
}

// TestAddingZeroCreatesACounter: INCRBY key 0 on a missing or deleted key
// makes a counter of 0 that exists (Redis answers 0 and GET then finds
// "0"); on a live counter it changes nothing.
func TestAddingZeroCreatesACounter(t *testing.T) {
	c, err := Counter{}.Add(7, 0)
	if err != nil || !c.Live() || c.Value() != 0 {
		t.Fatalf("Add(0) on no counter: live %v value %d err %v, want a live 0", c.Live(), c.Value(), err)
	}
	c, _ = c.Add(7, 5)
	deleted := c.Reset()
	again, err := deleted.Add(8, 0)
	if err != nil || !again.Live() || again.Value() != 0 {
		t.Fatalf("Add(0) after a delete: live %v value %d err %v, want a live 0", again.Live(), again.Value(), err)
	}
	if same, _ := c.Add(7, 0); !same.Equal(c) {
		t.Fatalf("Add(0) on a live counter changed it: %v to %v", c, same)
	}
	concurrent, _ := c.Add(9, 3) // 3 more, not seen by the delete
	if m := MergeCounters(again, concurrent); m.Value() != 3 {
		t.Fatalf("merging the deleted-then-zeroed copy with a concurrent increment of 3: %d, want 3", m.Value())
	}
}

// TestCountersTakeAnyMovement: an actor's running totals are 128-bit, so
// INCRBY and DECRBY of nanosecond timestamps, thousands of times, never
// run out (64-bit totals and 64 stand-in entries refused the 641st pair),
// and DEL keeps working after; the entry encodes and merges whole.
func TestCountersTakeAnyMovement(t *testing.T) {
	const ts = 1_764_300_000_000_000_000
	var c Counter
	var err error
	var copies []Counter
	for i := range 5000 {
		if c, err = c.Add(1, ts); err != nil {
			t.Fatalf("pair %d, INCRBY: %v", i, err)
		}
		if c, err = c.Add(1, -ts); err != nil {
			t.Fatalf("pair %d, DECRBY: %v", i, err)
		}
		if i%1000 == 0 {
			copies = append(copies, c)
		}
	}
	if c.Value() != 0 || len(c.Entries) != 1 {
		t.Fatalf("after 5000 pairs: value %d in %d entries, want 0 in 1", c.Value(), len(c.Entries))
	}
	d, err := Decode(Object{Cnt: c}.Encode())
	if err != nil || !d.Cnt.Equal(c) {
		t.Fatalf("decoded %v, %v; want %v", d.Cnt, err, c)
	}
	if _, cnt, err := ParseReadToken(ReadToken(nil, c)); err != nil || !cnt.Equal(c) {
		t.Fatalf("a token of the counter parses as %v, %v", cnt, err)
	}
	c, _ = c.Add(1, 7)
	for i, old := range copies {
		if m := MergeCounters(old, c); !m.Equal(c) || m.Value() != 7 || !c.Descends(old) || old.Descends(c) {
			t.Fatalf("merge with copy %d: %d (equal %v)", i, m.Value(), m.Equal(c))
		}
	}
	c = c.Reset()
	if c, err = c.Add(1, 3); err != nil || c.Value() != 3 {
		t.Fatalf("INCRBY 3 after DEL: %d, %v", c.Value(), err)
	}
	// Values past int64 over several actors are held at the bounds.
	var big Counter
	for a := uint64(1); a <= 4; a++ {
		e := CounterEntry{Actor: a, IncHi: 1 << 62}
		big.Entries = append(big.Entries, e)
	}
	if big.Value() != math.MaxInt64 {
		t.Fatalf("four actors each past 2^126: %d, want MaxInt64", big.Value())
	}
	for i := range big.Entries {
		big.Entries[i].DecHi, big.Entries[i].Dec = big.Entries[i].IncHi, 5
	}
	if big.Value() != -20 {
		t.Fatalf("each actor 5 under: %d, want -20", big.Value())
	}
}

// TestWideCountersMergeAndEncode: counters whose totals pass 64 bits
// merge as a join (commutative, associative, idempotent, Descends agreeing
// with Merge) and encode exactly, as narrow ones do.
func TestWideCountersMergeAndEncode(t *testing.T) {
	word := func(t *rapid.T, name string) uint64 {
		return rapid.SampledFrom([]uint64{0, 1, 5, 1 << 63, math.MaxUint64}).Draw(t, name)
	}
	gen := func(t *rapid.T, name string) Counter {
		var c Counter
		for a := uint64(1); a <= 3; a++ {
			if !rapid.Bool().Draw(t, fmt.Sprintf("%s has %d", name, a)) {
				continue
			}
			e := CounterEntry{Actor: a}
			e.setInc(u128{word(t, "inc hi"), word(t, "inc lo")})
			e.setDec(u128{word(t, "dec hi"), word(t, "dec lo")})
			ib, db := u128{word(t, "ibase hi"), word(t, "ibase lo")}, u128{word(t, "dbase hi"), word(t, "dbase lo")}
			if e.inc().less(ib) {
				ib = e.inc()
			}
			if e.dec().less(db) {
				db = e.dec()
			}
			e.setIncBase(ib)
			e.setDecBase(db)
			c.Entries = append(c.Entries, e)
		}
		return c
	}
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := gen(t, "a"), gen(t, "b"), gen(t, "c")
		if !MergeCounters(a, b).Equal(MergeCounters(b, a)) {
			t.Fatal("merge not commutative")
		}
		if !MergeCounters(MergeCounters(a, b), c).Equal(MergeCounters(a, MergeCounters(b, c))) {
			t.Fatal("merge not associative")
		}
		if !MergeCounters(a, a).Equal(a) {
			t.Fatal("merge not idempotent")
		}
		m := MergeCounters(a, b)
		if !m.Descends(a) || !m.Descends(b) || m.Equal(a) && !a.Descends(b) {
			t.Fatalf("Descends disagrees with Merge: %v %v", a, b)
		}
		o := Object{Cnt: m}
		enc := o.Encode()
		if len(enc) != o.EncodedLen() {
			t.Fatalf("EncodedLen %d, encoding %d bytes", o.EncodedLen(), len(enc))
		}
		d, err := Decode(enc)
		if err != nil || !d.Cnt.Equal(m) {
			t.Fatalf("decoded %v, %v; want %v", d.Cnt, err, m)
		}
		_ = m.Value() // must not panic
	})
}

// TestDeleteSeenSaysWhetherItDeleted: a delete with a token deleted
// something only if it reset changes that counted, here or in what the
// read saw; a token of a counter already deleted when read (a plain DEL in
// a cluster sends the quorum read's counter) deleted nothing, on a replica
// that lacks the counter or holds older totals of it.
func TestDeleteSeenSaysWhetherItDeleted(t *testing.T) {
	live, _ := Counter{}.Add(7, 3)
	if _, deleted := (Object{}).DeleteSeen(1, nil, live, 1); !deleted {
		t.Error("a token that saw +3 on a replica that lacks them: not deleted")
	}
	if _, deleted := (Object{}).DeleteSeen(1, nil, live.Reset(), 1); deleted {
		t.Error("a token of a counter reset before the read, on a replica that lacks it: deleted")
	}
	older, _ := Counter{}.Add(7, 1)
	more, _ := older.Add(7, 2)
	if _, deleted := (Object{Cnt: older.Reset()}).DeleteSeen(1, nil, more.Reset(), 1); deleted {
		t.Error("a replica with older reset totals, a token reset after more: deleted")
	}
	zero, _ := live.Add(7, -3) // +3 -3: live, at 0
	later, _ := zero.Add(7, 1)
	if _, deleted := (Object{Cnt: later}).DeleteSeen(1, nil, zero, 1); !deleted {
		t.Error("a token that saw +3 -3, the replica at +1 more: not deleted")
	}
	if _, deleted := (Object{Cnt: later}).DeleteSeen(1, nil, Counter{}, 1); deleted {
		t.Error("a token that saw no counter: deleted")
	}
}

// TestTokensCannotWedgeACounter: a token is client input, and a delete
// merges its counter in. One that put a node's actor (INFO shows it) and
// its stand-ins at 2^128-1 left INCR through that node no room, for good,
// DEL included (a review's finding); one with entries without number would
// grow the object. Both are refused; honest tokens are not.
func TestTokensCannotWedgeACounter(t *testing.T) {
	const actor = 0x1234
	var crafted Counter
	for k := uint64(0); k < maxStandIns; k++ {
		e := CounterEntry{Actor: standIn(actor, k)}
		e.setInc(u128{math.MaxUint64, math.MaxUint64})
		e.setDec(u128{math.MaxUint64, math.MaxUint64})
		crafted = MergeCounters(crafted, Counter{Entries: []CounterEntry{e}})
	}
	if _, _, err := ParseReadToken(ReadToken(nil, crafted)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a token of totals near 2^128: %v, want ErrCorrupt", err)
	}
	var many Counter
	for a := uint64(1); a <= maxTokenCounterEntries+1; a++ {
		many.Entries = append(many.Entries, CounterEntry{Actor: a, Inc: 1})
	}
	if _, _, err := ParseReadToken(ReadToken(nil, many)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a token of %d counter entries: %v, want ErrCorrupt", len(many.Entries), err)
	}
	many.Entries = many.Entries[:maxTokenCounterEntries]
	honest, _ := Counter{}.Add(actor, math.MaxInt64)
	for range 100 {
		honest, _ = honest.Add(actor, math.MaxInt64)
		honest, _ = honest.Add(actor, -math.MaxInt64)
	}
	for _, c := range []Counter{many, honest} {
		if _, got, err := ParseReadToken(ReadToken(nil, c)); err != nil || !got.Equal(c) {
			t.Fatalf("an honest token of %d entries: %v, %v", len(c.Entries), got, err)
		}
	}
}

// TestDecodeRefusesOverlongNumbers: the encoder writes every number in
// its shortest form, so a padded one is not its encoding.
func TestDecodeRefusesOverlongNumbers(t *testing.T) {
	c, _ := Counter{}.Add(1, 5)
	good := Object{Cnt: c}.Encode()
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
	// 'C', count 1, actor (8 bytes), then Inc 5 written as 0x85 0x00.
	bad := append(append([]byte{}, good[:11]...), 0x85, 0x00)
	bad = append(bad, good[12:]...)
	if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("an overlong total decoded: %v", err)
	}
}

// TestUvarintLenAgreesWithTheEncoder: the decoder refuses a number not in
// the length uvarintLen gives, so it must be the encoder's, at every
// boundary.
func TestUvarintLenAgreesWithTheEncoder(t *testing.T) {
	for shift := range 64 {
		for _, x := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1, math.MaxUint64} {
			if got, want := uvarintLen(x), len(binary.AppendUvarint(nil, x)); got != want {
				t.Fatalf("uvarintLen(%d) = %d, the encoding is %d bytes", x, got, want)
			}
		}
	}
}
