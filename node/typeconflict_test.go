package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/wire"
)

// tokenOf is the write options a client sends back with the token of
// what it read (VGET's, or an HTTP GET's X-Rumor-Context).
func tokenOf(t *testing.T, o crdt.Object) wire.WriteOptions {
	t.Helper()
	ctx, cnt, err := crdt.ParseReadToken(wire.ReadToken(o))
	if err != nil {
		t.Fatal(err)
	}
	return wire.WriteOptions{Context: ctx, Counter: cnt, HasContext: true}
}

// TestATypeConflictIsKeptAndAWriteWithItsTokenResolvesIt: a key SET on
// one side of a partition and INCRed on the other holds both after the
// heal, on every node (the increments were acknowledged: they must not
// vanish), and a write with the token of a read that saw both resolves
// the counter with the siblings.
func TestATypeConflictIsKeptAndAWriteWithItsTokenResolvesIt(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	a, b := []string{"n1", "n2"}, []string{"n3", "n4", "n5"}
	tc.net.Partition(a, b)
	tc.setDown(a, b)
	k := []byte("conflict")
	if err := tc.nodes["n1"].Put(ctx, k, []byte("reg"), wire.WriteOptions{}); err != nil {
		t.Fatalf("SET on one side: %v", err)
	}
	for range 3 {
		if _, err := tc.nodes["n3"].Incr(ctx, k, 1); err != nil {
			t.Fatalf("INCR on the other side: %v", err)
		}
	}
	tc.net.Heal()
	tc.setDown()
	testutil.Eventually(t, 15*time.Second, "hints to drain", func() bool { return tc.hintsPending() == 0 })
	all := wire.WithQuorum(ctx, wire.Quorum{R: 3})
	var read crdt.Object
	for _, n := range names {
		o, err := tc.nodes[n].Get(all, k)
		if err != nil {
			t.Fatal(err)
		}
		if !o.Conflicted() || o.Cnt.Value() != 3 || siblings(o) != "[reg]" {
			t.Fatalf("read through %s after the heal: siblings %s, counter %d (live %v); want [reg] and the 3 acknowledged increments", n, siblings(o), o.Cnt.Value(), o.Cnt.Live())
		}
		read = o
	}
	if _, err := tc.nodes["n4"].Incr(ctx, k, 1); err == nil {
		t.Fatal("INCR on a key in a type conflict was taken; GET shows it as a register")
	}
	if err := tc.nodes["n4"].Put(ctx, k, []byte("resolved"), tokenOf(t, read)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "every node to read the resolved value alone", func() bool {
		for _, n := range names {
			o, err := tc.nodes[n].Get(all, k)
			if err != nil || o.Conflicted() || o.Cnt.Live() || siblings(o) != "[resolved]" {
				return false
			}
		}
		return true
	})
}

// TestADeleteWithATokenResetsOnlyTheIncrementsItSaw: a delete with the
// token of a read that saw 2 increments, made after 3 more were
// acknowledged, leaves those 3.
func TestADeleteWithATokenResetsOnlyTheIncrementsItSaw(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	k := []byte("cnt")
	for range 2 {
		if _, err := tc.nodes["n1"].Incr(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
	}
	o, err := tc.nodes["n2"].Get(ctx, k)
	if err != nil || o.Cnt.Value() != 2 {
		t.Fatalf("read: %d %v", o.Cnt.Value(), err)
	}
	opts := tokenOf(t, o)
	for range 3 {
		if _, err := tc.nodes["n3"].Incr(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "every copy to hold the 5 increments", func() bool {
		for _, n := range names {
			if tc.count(t, n, "cnt") != 5 {
				return false
			}
		}
		return true
	})
	existed, err := tc.nodes["n2"].Delete(ctx, k, opts)
	if err != nil || !existed {
		t.Fatalf("DEL with the token: existed %v, %v", existed, err)
	}
	got, err := tc.nodes["n1"].Get(wire.WithQuorum(ctx, wire.Quorum{R: 3}), k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cnt.Value() != 3 {
		t.Fatalf("DEL with the token of a read that saw 2: counter %d, want the 3 increments acknowledged after the read", got.Cnt.Value())
	}
}

// TestADeleteWithATokenCoveringNothingAnswersZero: VDEL with the token of
// a read that found nothing deletes nothing, and says so.
func TestADeleteWithATokenCoveringNothingAnswersZero(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, 3, 2, 2)
	ctx := context.Background()
	k := []byte("reg")
	o, err := tc.nodes["n1"].Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	opts := tokenOf(t, o)
	if err := tc.nodes["n1"].Put(ctx, k, []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	existed, err := tc.nodes["n1"].Delete(ctx, k, opts)
	if err != nil {
		t.Fatal(err)
	}
	if existed {
		t.Fatal("VDEL with a token covering nothing answered 1")
	}
	if got := value(t, tc.nodes["n2"], "reg"); got != "[v]" {
		t.Fatalf("after VDEL with a token covering nothing: %s, want [v]", got)
	}
}

// TestAConflictTokenResolvesOnAReplicaHoldingOnlyTheCounter: a key in a
// type conflict, read through a replica that holds both; the PUT with the
// read's token is coordinated by a replica that holds only the counter so
// far (the SET had not reached it). The token covers that counter: the
// PUT is taken, not refused with WRONGTYPE (a review's finding).
func TestAConflictTokenResolvesOnAReplicaHoldingOnlyTheCounter(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newQuietCluster(t, names, 1, 1)
	ctx := context.Background()
	k := tc.keyLedBy(t, "n1")
	var cnt crdt.Object
	c, _ := cnt.Cnt.Add(0xc0ffee, 3)
	cnt.Cnt = c
	var reg crdt.Object
	reg.Reg = reg.Reg.Update(0xfeed, nil, []byte("reg"), false, 2)
	// n1 got only the INCRs, n3 only the SET, n2 both.
	tc.mergeInto(t, k, cnt, "n1", "n2")
	tc.mergeInto(t, k, reg, "n2", "n3")
	read, err := tc.nodes["n2"].Get(ctx, []byte(k)) // R=1: n2's own copy
	if err != nil || !read.Conflicted() {
		t.Fatalf("VGET via n2: conflicted %v, %v", read.Conflicted(), err)
	}
	opts := tokenOf(t, read)
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("resolved"), opts); err != nil {
		if errors.Is(err, wire.ErrWrongType) {
			t.Fatalf("PUT with the token of a read that saw the type conflict (register + counter 3) was refused: %v", err)
		}
		t.Fatal(err)
	}
}

// TestADeleteWithACounterTokenSaysItDeleted: a token that saw +3 and -3
// (a live counter of 0) resets them, and a later +1 survives: the delete
// deleted something and answers 1, although the total (1) and liveness
// are the same before and after it (a review's finding).
func TestADeleteWithACounterTokenSaysItDeleted(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, 3, 2, 2)
	ctx := context.Background()
	k := []byte("c")
	if _, err := tc.nodes["n1"].Incr(ctx, k, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.nodes["n1"].Incr(ctx, k, -3); err != nil {
		t.Fatal(err)
	}
	o, err := tc.nodes["n1"].Get(ctx, k)
	if err != nil || !o.Cnt.Live() || o.Cnt.Value() != 0 {
		t.Fatalf("read: live %v value %d %v", o.Cnt.Live(), o.Cnt.Value(), err)
	}
	opts := tokenOf(t, o)
	if _, err := tc.nodes["n1"].Incr(ctx, k, 1); err != nil {
		t.Fatal(err)
	}
	existed, err := tc.nodes["n1"].Delete(ctx, k, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := tc.object(t, "n1", "c")
	t.Logf("after the delete: value %d, entries %+v", after.Cnt.Value(), after.Cnt.Entries)
	if !existed {
		t.Fatalf("VDEL with a token that saw the counter (+3 -3, live) reset those increments but answered 0 (HTTP 404)")
	}
	if after.Cnt.Value() != 1 {
		t.Fatalf("after the delete: %d, want the 1 made after the read", after.Cnt.Value())
	}
}

// TestDelOfACounterDeletedBeforeAnswersZero: a key whose counter was
// deleted long ago (every entry reset) does not exist: DEL answers 0
// through any node, also one whose replica never received the old counter
// (it was down, or a stand-in held its copy) (a review's finding).
func TestDelOfACounterDeletedBeforeAnswersZero(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newQuietCluster(t, names, 2, 2)
	ctx := context.Background()
	k := tc.keyLedBy(t, "n1")
	var dead crdt.Object
	c, _ := dead.Cnt.Add(0xc0ffee, 3)
	dead.Cnt = c.Reset()                 // INCRBY 3, then DEL: gone
	tc.mergeInto(t, k, dead, "n2", "n3") // n1 never got it
	o, err := tc.nodes["n1"].Get(ctx, []byte(k))
	if err != nil || o.Kind() != crdt.KindNone {
		t.Fatalf("read: kind %v, %v; want none", o.Kind(), err)
	}
	existed, err := tc.nodes["n1"].Delete(ctx, []byte(k), wire.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if existed {
		t.Fatalf("DEL of a key that does not exist (its counter deleted before) answered 1")
	}
}
