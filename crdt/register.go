package crdt

import "bytes"

// A Sibling is one value of a register with the dot of the write that made
// it and the coordinator's clock at that write (Unix nanoseconds), which
// only orders siblings for display: causality never looks at it.
type Sibling struct {
	Dot   Dot
	Time  int64
	Value []byte
}

// A Register is a dotted version vector set: the values written
// concurrently (Siblings, sorted by dot, each dot covered by Context) and
// every write the register has seen (Context). A register with a context
// and no siblings is a tombstone; the zero Register has seen nothing.
type Register struct {
	Context  Context
	Siblings []Sibling
}

// Live reports whether the register holds a value.
func (r Register) Live() bool { return len(r.Siblings) > 0 }

// Newest returns the sibling that a plain GET shows: the latest by write
// time, ties broken by the greater dot, so every replica picks the same.
// It reports false for a register with no siblings.
func (r Register) Newest() (Sibling, bool) {
	if len(r.Siblings) == 0 {
		return Sibling{}, false
	}
	best := r.Siblings[0]
	for _, s := range r.Siblings[1:] {
		if s.Time > best.Time || (s.Time == best.Time && best.Dot.Less(s.Dot)) {
			best = s
		}
	}
	return best, true
}

// Update is a write coordinated by actor: it drops the siblings that ctx
// covers, and, unless del is set, adds value as a new sibling with a fresh
// dot of actor, written at time now. The result has seen everything r and
// ctx have seen. A write without a client context passes r.Context.
//
// The fresh dot's counter is one above anything r or ctx have seen from
// actor, so the dot is new as long as actor's own replica is the one
// coordinating (it never forgets its own acknowledged writes).
func (r Register) Update(actor uint64, ctx Context, value []byte, del bool, now int64) Register {
	out := Register{Context: Join(r.Context, ctx)}
	kept := make([]Sibling, 0, len(r.Siblings)+1)
	for _, s := range r.Siblings {
		if !ctx.Covers(s.Dot) {
			kept = append(kept, s)
		}
	}
	if !del {
		dot := Dot{Actor: actor, Counter: out.Context.Get(actor) + 1}
		out.Context = out.Context.With(dot)
		kept = insertSibling(kept, Sibling{Dot: dot, Time: now, Value: value})
	}
	if len(kept) > 0 {
		out.Siblings = kept
	}
	return out
}

func insertSibling(sibs []Sibling, s Sibling) []Sibling {
	i := len(sibs)
	for i > 0 && s.Dot.Less(sibs[i-1].Dot) {
		i--
	}
	sibs = append(sibs, Sibling{})
	copy(sibs[i+1:], sibs[i:])
	sibs[i] = s
	return sibs
}

// MergeRegisters returns the register that has seen what a and b have: a
// sibling survives if the other side holds it too or has not seen its dot.
// It is commutative, associative and idempotent.
func MergeRegisters(a, b Register) Register {
	// The common cases, without allocating: a replica with nothing yet,
	// replicas that agree (a quorum read's answers, most of the time), and
	// one side newer than the other (a replica sent a coordinator's copy
	// of the next write of a key it holds).
	switch {
	case len(a.Context) == 0 && len(a.Siblings) == 0:
		return b
	case len(b.Context) == 0 && len(b.Siblings) == 0:
		return a
	case a.Equal(b):
		return a
	case b.Descends(a):
		return b
	case a.Descends(b):
		return a
	}
	return mergeRegisters(a, b)
}

// mergeRegisters is MergeRegisters without its shortcuts (which must give
// what it gives: TestMergeShortcutsAgree).
func mergeRegisters(a, b Register) Register {
	out := Register{Context: Join(a.Context, b.Context)}
	var sibs []Sibling
	i, j := 0, 0
	for i < len(a.Siblings) || j < len(b.Siblings) {
		switch {
		case j == len(b.Siblings) || (i < len(a.Siblings) && a.Siblings[i].Dot.Less(b.Siblings[j].Dot)):
			if s := a.Siblings[i]; !b.Context.Covers(s.Dot) {
				sibs = append(sibs, s)
			}
			i++
		case i == len(a.Siblings) || b.Siblings[j].Dot.Less(a.Siblings[i].Dot):
			if s := b.Siblings[j]; !a.Context.Covers(s.Dot) {
				sibs = append(sibs, s)
			}
			j++
		default: // same dot on both sides: the same write
			sibs = append(sibs, pickSame(a.Siblings[i], b.Siblings[j]))
			i++
			j++
		}
	}
	out.Siblings = sibs
	return out
}

// pickSame chooses between two siblings with one dot. They are equal unless
// an actor reused a dot (a bug, or a replica that lost acknowledged state);
// choosing by content keeps merge commutative even then.
func pickSame(a, b Sibling) Sibling {
	if a.Time != b.Time {
		if a.Time > b.Time {
			return a
		}
		return b
	}
	if bytes.Compare(a.Value, b.Value) >= 0 {
		return a
	}
	return b
}

// Descends reports whether r has seen everything o holds, that is whether
// merging o into r leaves r unchanged.
func (r Register) Descends(o Register) bool {
	if !r.Context.Descends(o.Context) {
		return false
	}
	j := 0
	for _, s := range r.Siblings {
		if !o.Context.Covers(s.Dot) {
			continue
		}
		for j < len(o.Siblings) && o.Siblings[j].Dot.Less(s.Dot) {
			j++
		}
		if j == len(o.Siblings) || o.Siblings[j].Dot != s.Dot || !sameSibling(pickSame(s, o.Siblings[j]), s) {
			return false
		}
	}
	return true
}

// Equal reports whether both registers are the same state.
func (r Register) Equal(o Register) bool {
	if !r.Context.Equal(o.Context) || len(r.Siblings) != len(o.Siblings) {
		return false
	}
	for i := range r.Siblings {
		if !sameSibling(r.Siblings[i], o.Siblings[i]) {
			return false
		}
	}
	return true
}

func sameSibling(a, b Sibling) bool {
	return a.Dot == b.Dot && a.Time == b.Time && bytes.Equal(a.Value, b.Value)
}
