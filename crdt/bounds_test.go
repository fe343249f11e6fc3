package crdt

import (
	"errors"
	"math"
	"testing"
)

// TestTokensRefuseCountersThatWouldWrap: a write's dot is one past its
// context's counter for the writing actor, so a pasted token whose counter
// is at 2^64-1 made it wrap to a dot its own context does not cover: the
// coordinator stored an object no replica (nor itself) could decode again,
// and the key was broken for good. (Found in review.) Tokens and stored
// objects now refuse counters past MaxEventCounter, and a write at the
// largest one accepted stays decodable.
func TestTokensRefuseCountersThatWouldWrap(t *testing.T) {
	const actor = 7
	for _, c := range []uint64{math.MaxUint64, MaxEventCounter + 1} {
		bad := Object{Reg: Register{Context: Context{{Actor: actor, Counter: c}}}}.Encode()
		if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Decode of a context counter of %d: %v, want ErrCorrupt", c, err)
		}
	}
	// Tokens stop well below: one at MaxEventCounter itself was accepted
	// (found in review), and the write on top of it had a dot past it,
	// an object its own coordinator could not decode.
	for _, c := range []uint64{math.MaxUint64, MaxEventCounter + 1, MaxEventCounter, MaxEventCounter - 1, maxTokenEventCounter + 1} {
		tok := Context{{Actor: actor, Counter: c}}.Token()
		if _, err := ParseToken(tok); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseToken of a counter of %d: %v, want ErrCorrupt", c, err)
		}
	}
	ctx, err := ParseToken(Context{{Actor: actor, Counter: maxTokenEventCounter}}.Token())
	if err != nil {
		t.Fatal(err)
	}
	w := Register{}.Update(actor, nil, []byte("old"), false, 1)
	w = w.Update(actor, ctx, []byte("new"), false, 2)
	for i := range 1000 { // and the writes after it
		w = w.Update(actor, w.Context, []byte("newer"), false, int64(3+i))
	}
	if _, err := Decode(Object{Reg: w}.Encode()); err != nil {
		t.Fatalf("writes under the largest accepted context do not decode: %v", err)
	}
}

// TestParseTokenRejectsNonCanonical: ParseToken promises to reject what
// Token could not have produced. (Found in review: non-zero trailing bits,
// line breaks that the base64 decoder skips and overlong numbers passed.)
func TestParseTokenRejectsNonCanonical(t *testing.T) {
	canonical := Context(nil).Token() // "AQA"
	for _, tok := range []string{
		"AQB",     // the same bytes, non-zero trailing bits
		"AQ\nA",   // a line break inside
		"AQA\r\n", // a trailing CRLF
		"AYAA",    // a count of 0 as a two-byte uvarint
	} {
		if c, err := ParseToken(tok); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseToken(%q) = %v, %v; want ErrCorrupt (Token gives %q)", tok, c, err, canonical)
		}
	}
	for _, c := range []Context{nil, {{Actor: 1, Counter: 1}}, {{Actor: 3, Counter: 300}, {Actor: math.MaxUint64, Counter: maxTokenEventCounter}}} {
		if got, err := ParseToken(c.Token()); err != nil || got.Token() != c.Token() {
			t.Errorf("round trip of %v: %v, %v", c, got, err)
		}
	}
}

// TestMergedCounterDoesNotWrap: each replica's Add keeps its own view in
// int64's range, but two actors' additions can pass it once merged. The
// total is held at the bound, not wrapped to the other end, and an INCR
// past it fails. (Found in review: MaxInt64 and +1 read as MinInt64.)
func TestMergedCounterDoesNotWrap(t *testing.T) {
	add := func(c Counter, actor uint64, d int64) Counter {
		t.Helper()
		out, err := c.Add(actor, d)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	up := MergeCounters(add(Counter{}, 1, math.MaxInt64), add(Counter{}, 2, 1))
	if v := up.Value(); v != math.MaxInt64 {
		t.Errorf("MaxInt64 (actor 1) merged with +1 (actor 2) = %d, want it held at MaxInt64", v)
	}
	if _, err := up.Add(3, 1); !errors.Is(err, ErrOverflow) {
		t.Errorf("INCR past the held total: %v, want ErrOverflow", err)
	}
	down := MergeCounters(add(Counter{}, 1, math.MinInt64), add(Counter{}, 2, -1))
	if v := down.Value(); v != math.MinInt64 {
		t.Errorf("MinInt64 (actor 1) merged with -1 (actor 2) = %d, want it held at MinInt64", v)
	}
	// Far past the range both ways and back: exact again once in range.
	c := MergeCounters(add(add(Counter{}, 1, math.MaxInt64), 1, -5), add(Counter{}, 2, math.MaxInt64))
	c = MergeCounters(c, add(Counter{}, 3, math.MinInt64))
	c = MergeCounters(c, add(Counter{}, 4, math.MinInt64))
	if v := c.Value(); v != -7 { // (2^63-1-5) + (2^63-1) - 2^63 - 2^63 = -7
		t.Errorf("a total back in range = %d, want -7", v)
	}
}

// TestDecodeRejectsEmptyRegisterSection: AppendEncoding never writes a
// register section with neither context nor siblings.
func TestDecodeRejectsEmptyRegisterSection(t *testing.T) {
	in := []byte{encodingVersion, tagRegister, 0, 0}
	if o, err := Decode(in); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode(%x) = %v, %v; want ErrCorrupt", in, o, err)
	}
}
