package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

func TestPlanCopies(t *testing.T) {
	rank := []string{"a", "b", "c", "d", "e", "f"}
	up := func(down ...string) func(string) bool {
		return func(n string) bool { return !slices.Contains(down, n) }
	}
	for _, tc := range []struct {
		name      string
		self      string
		reachable func(string) bool
		sloppy    bool
		copies    []copySlot
		spare     []string
	}{
		{"all up", "", up(), true,
			[]copySlot{{"a", ""}, {"b", ""}, {"c", ""}}, []string{"d", "e", "f"}},
		{"one down: the first fallback stands in", "", up("b"), true,
			[]copySlot{{"a", ""}, {"d", "b"}, {"c", ""}}, []string{"e", "f"}},
		{"fallbacks that are down are skipped", "", up("a", "d"), true,
			[]copySlot{{"e", "a"}, {"b", ""}, {"c", ""}}, []string{"f"}},
		{"a coordinating fallback stands in first", "f", up("a", "b", "c"), true,
			[]copySlot{{"f", "a"}, {"d", "b"}, {"e", "c"}}, nil},
		{"too few nodes for every copy", "", up("a", "b", "d", "e"), true,
			[]copySlot{{"f", "a"}, {"c", ""}}, nil},
		{"strict: preferred replicas only", "", up("b"), false,
			[]copySlot{{"a", ""}, {"c", ""}}, nil},
	} {
		if tc.name == "all up" { // a healthy plan never computes the fallbacks
			sp := spares{fallbacks: func() []string { t.Fatal("fallbacks computed for a healthy plan"); return nil }, reachableFn: tc.reachable, sloppy: true}
			if copies := planCopies(nil, rank[:3], &sp); len(copies) != 3 {
				t.Fatalf("healthy plan: %v", copies)
			}
		}
		loads := 0
		sp := spares{fallbacks: func() []string { loads++; return rank[3:] }, self: tc.self, reachableFn: tc.reachable, sloppy: tc.sloppy}
		copies := planCopies(nil, rank[:3], &sp)
		var spare []string
		for f, ok := sp.next(); ok; f, ok = sp.next() {
			spare = append(spare, f)
		}
		if loads > 1 {
			t.Errorf("%s: the fallbacks were computed %d times", tc.name, loads)
		}
		if !slices.Equal(copies, tc.copies) || !slices.Equal(spare, tc.spare) {
			t.Errorf("%s: copies %v spare %v, want %v and %v", tc.name, copies, spare, tc.copies, tc.spare)
		}
	}
}

// With a placement, the spares are the partition's ranking after its
// replicas, computed on demand.
func TestSparesFollowThePlacementsRanking(t *testing.T) {
	p, err := ring.Compute(ring.PlacementConfig{Partitions: 64}, []string{"a", "b", "c", "d", "e", "f"})
	if err != nil {
		t.Fatal(err)
	}
	for part := uint32(0); part < 64; part++ {
		rank := p.Ranking(part)
		reps := p.Replicas(part)
		down := reps[1]
		rt := route{part: part, reps: reps, members: 6, place: p}
		sp := rt.spares(nil, "", nil, true)
		sp.reachableFn = func(n string) bool { return n != down }
		copies := planCopies(nil, reps, &sp)
		want := []copySlot{{reps[0], ""}, {rank[3], down}, {reps[2], ""}}
		var left []string
		for f, ok := sp.next(); ok; f, ok = sp.next() {
			left = append(left, f)
		}
		if !slices.Equal(copies, want) || !slices.Equal(left, rank[4:]) {
			t.Fatalf("partition %d (ranking %v, %s down): copies %v, spares left %v; want %v and %v", part, rank, down, copies, left, want, rank[4:])
		}
	}
}

func (tc *testCluster) hintsPending() int {
	n := 0
	for _, c := range tc.nodes {
		n += c.cfg.Store.HintCount()
	}
	return n
}

func (tc *testCluster) hintsFor(target string) int {
	n := 0
	for _, c := range tc.nodes {
		n += c.cfg.Store.Hints()[target]
	}
	return n
}

// setDown tells every node of each group that gossip reports the nodes of
// the other groups failed (what gossip does a few seconds into a real
// partition); no groups: everyone is alive.
func (tc *testCluster) setDown(groups ...[]string) {
	for _, c := range tc.nodes {
		var down []string
		for _, g := range groups {
			if !slices.Contains(g, c.cfg.Self) {
				down = append(down, g...)
			}
		}
		c.SetDown(down)
	}
}

// sum adds up one of the coordinators' counters over every node.
func (tc *testCluster) sum(counter func(CoordinatorStats) uint64) uint64 {
	var n uint64
	for _, c := range tc.nodes {
		n += counter(c.Stats())
	}
	return n
}

// local reads key straight from node's store, no quorum.
func (tc *testCluster) local(t *testing.T, node, key string) string {
	t.Helper()
	return siblings(tc.object(t, node, key))
}

// missedBy stores the value "v" for key on every node but missing, as a
// write that missing missed leaves it (written straight into the stores:
// a coordinator's late call could still reach missing).
func (tc *testCluster) missedBy(t *testing.T, key, missing string) {
	t.Helper()
	var o crdt.Object
	o.Reg = o.Reg.Update(tc.nodes[tc.names[0]].cfg.Store.Actor(), o.Reg.Context, []byte("v"), false, 1)
	tc.mergeInto(t, key, o, slices.DeleteFunc(slices.Clone(tc.names), func(n string) bool { return n == missing })...)
}

// TestPartitionIntoHalvesStaysWritableAndConverges: with the cluster cut
// into a side of two and a side of three, writes succeed on both sides
// (W=2 nodes are reachable on each, stand-ins holding hinted copies);
// after the heal the hints drain to zero, concurrent writes to one key are
// siblings everywhere, and counters add up to every increment.
func TestPartitionIntoHalvesStaysWritableAndConverges(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	a, b := []string{"n1", "n2"}, []string{"n3", "n4", "n5"}
	tc.net.Partition(a, b)
	tc.setDown(a, b)
	const keys = 30
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		if err := tc.nodes[a[i%2]].Put(ctx, []byte(k), []byte(fmt.Sprint("a", i)), wire.WriteOptions{}); err != nil {
			t.Fatalf("write %s on the side of two: %v", k, err)
		}
		if err := tc.nodes[b[i%3]].Put(ctx, []byte(k), []byte(fmt.Sprint("b", i)), wire.WriteOptions{}); err != nil {
			t.Fatalf("write %s on the side of three: %v", k, err)
		}
		if _, err := tc.nodes[a[i%2]].Incr(ctx, []byte("hits"), 1); err != nil {
			t.Fatalf("INCR on the side of two: %v", err)
		}
		if _, err := tc.nodes[b[i%3]].Incr(ctx, []byte("hits"), 10); err != nil {
			t.Fatalf("INCR on the side of three: %v", err)
		}
	}
	// Each side reads its own writes.
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		if got := value(t, tc.nodes["n2"], k); got != fmt.Sprintf("[a%d]", i) {
			t.Fatalf("%s on the side of two: %s", k, got)
		}
		if got := value(t, tc.nodes["n4"], k); got != fmt.Sprintf("[b%d]", i) {
			t.Fatalf("%s on the side of three: %s", k, got)
		}
	}
	if tc.hintsPending() == 0 {
		t.Fatal("no hints were written during the partition")
	}
	tc.net.Heal()
	tc.setDown()
	testutil.Eventually(t, 15*time.Second, "hints to drain after the heal", func() bool { return tc.hintsPending() == 0 })
	// The side of two had room for two copies of each write, so a key
	// with two replicas on the other side left one of them without a
	// stand-in: handoff alone gives both writes to at least W replicas, and
	// reads (which repair) or anti-entropy give them to the third.
	unhinted := 0
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		want := fmt.Sprintf("[a%d b%d]", i, i)
		both := 0
		for _, r := range tc.replicasOf(k) {
			if tc.local(t, r, k) == want {
				both++
			}
		}
		if both < 2 {
			t.Fatalf("%s: %d replicas hold both writes after handoff, want at least W=2", k, both)
		}
		unhinted += 3 - both
		for _, name := range names {
			if got := value(t, tc.nodes[name], k); got != want {
				t.Fatalf("%s via %s after the heal: %s, want %s", k, name, got, want)
			}
		}
		valueCtx(t, wire.WithQuorum(ctx, wire.Quorum{R: 3}), tc.nodes["n1"], k)
		for _, r := range tc.replicasOf(k) {
			testutil.Eventually(t, 15*time.Second, "read repair of "+k+" on "+r, func() bool { return tc.local(t, r, k) == want })
		}
	}
	t.Logf("%d of %d replica copies were not covered by hints (left to read repair and anti-entropy)", unhinted, 3*keys)
	for _, name := range names {
		o, err := tc.nodes[name].Get(ctx, []byte("hits"))
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Cnt.Value(); got != keys*11 {
			t.Fatalf("counter via %s = %d, want %d", name, got, keys*11)
		}
	}
	if delivered := tc.sum(func(s CoordinatorStats) uint64 { return s.HintsDelivered }); delivered == 0 {
		t.Error("hints drained but none counts as delivered")
	}
}

// TestNodeDownDuringWritesGetsItsHints: a node that is down while writes
// go on gets, once back, every write it missed from the stand-ins, found by
// the breakers alone (no gossip here), and reads through it see them all.
func TestNodeDownDuringWritesGetsItsHints(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	tc.net.Down("n3")
	others := []string{"n1", "n2", "n4", "n5"}
	const keys = 40
	missed := 0
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		// W=3: every write needs a stand-in for n3 when n3 is a replica.
		if err := tc.nodes[others[i%4]].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte(k), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatalf("write %s with n3 down: %v", k, err)
		}
		if _, err := tc.nodes[others[i%4]].Incr(ctx, []byte("hits"), 1); err != nil {
			t.Fatalf("INCR with n3 down: %v", err)
		}
		if slices.Contains(tc.replicasOf(k), "n3") {
			missed++
		}
	}
	if missed == 0 {
		t.Fatal("n3 is a replica of none of the keys: the test proves nothing")
	}
	if h := tc.hintsFor("n3"); h < missed {
		t.Fatalf("%d hints for n3, want at least the %d keys it missed", h, missed)
	}
	tc.net.Register("n3", tc.nodes["n3"].HandlePeer)
	testutil.Eventually(t, 15*time.Second, "hints for n3 to drain", func() bool { return tc.hintsFor("n3") == 0 })
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		want := fmt.Sprintf("[v%d]", i)
		if slices.Contains(tc.replicasOf(k), "n3") {
			if got := tc.local(t, "n3", k); got != want {
				t.Fatalf("%s in n3's own store after handoff: %s", k, got)
			}
		}
		if got := value(t, tc.nodes["n3"], k); got != want {
			t.Fatalf("%s via n3: %s", k, got)
		}
	}
	o, err := tc.nodes["n3"].Get(wire.WithQuorum(ctx, wire.Quorum{R: 3}), []byte("hits"))
	if err != nil || o.Cnt.Value() != keys {
		t.Fatalf("counter via n3 with R=3 = %d, %v; want %d", o.Cnt.Value(), err, keys)
	}
}

// TestReplicaDownInAClusterOfNGetsItsWrites: in a cluster of exactly N
// nodes there is no one to stand in for a replica that is down, so its
// copies go nowhere; the coordinators keep hints for it on their own
// copies, and once back it gets every write it missed by handoff alone
// (no read touches the keys before the check). Without the coordinators'
// hints it held none of them.
func TestReplicaDownInAClusterOfNGetsItsWrites(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	tc.net.Down("n2")
	const keys = 40
	for i := range keys {
		coord := tc.nodes[[]string{"n1", "n3"}[i%2]]
		if err := coord.Put(ctx, []byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatalf("write k%d with n2 down: %v", i, err)
		}
		if _, err := coord.Incr(ctx, []byte("hits"), 1); err != nil {
			t.Fatalf("INCR with n2 down: %v", err)
		}
	}
	if h := tc.hintsFor("n2"); h < keys+1 {
		t.Fatalf("%d hints for n2, want one for each of the %d keys it missed", h, keys+1)
	}
	tc.net.Register("n2", tc.nodes["n2"].HandlePeer)
	testutil.Eventually(t, 15*time.Second, "hints for n2 to drain", func() bool { return tc.hintsFor("n2") == 0 })
	for i := range keys {
		k := fmt.Sprint("k", i)
		if got, want := tc.local(t, "n2", k), fmt.Sprintf("[v%d]", i); got != want {
			t.Fatalf("%s in n2's own store after handoff: %s, want %s", k, got, want)
		}
	}
	if got := tc.count(t, "n2", "hits"); got != keys {
		t.Fatalf("counter in n2's own store after handoff = %d, want %d", got, keys)
	}
}

// TestNoPreferredReplicaReachable: a write reaching a node that is not a
// replica, when no replica can be reached, is coordinated there as a
// stand-in (sloppy) or refused (SLOPPY no); the stand-in's counter
// increments continue its own history, so none is lost on handoff.
func TestNoPreferredReplicaReachable(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	k := tc.keyOutside(t, "n1")
	reps := tc.replicasOf(k)
	for _, r := range reps {
		tc.net.Down(r)
	}
	strict := wire.WithQuorum(ctx, wire.Quorum{Sloppy: wire.SloppyNo})
	if err := tc.nodes["n1"].Put(strict, []byte(k), []byte("v"), wire.WriteOptions{}); err == nil {
		t.Fatal("SLOPPY no: a write with every replica down succeeded")
	}
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("sloppy write with every replica down: %v", err)
	}
	if got := value(t, tc.nodes["n1"], k); got != "[v]" {
		t.Fatalf("sloppy read of the stand-ins' copies: %s", got)
	}
	if tc.nodes["n1"].cfg.Store.Hints()[reps[0]] != 1 {
		t.Fatalf("n1 coordinated as a stand-in but holds no hint for %s: %v", reps[0], tc.nodes["n1"].cfg.Store.Hints())
	}
	for _, r := range reps {
		tc.net.Register(r, tc.nodes[r].HandlePeer)
	}
	testutil.Eventually(t, 15*time.Second, "hints to drain", func() bool { return tc.hintsPending() == 0 })
	if got := tc.local(t, reps[0], k); got != "[v]" {
		t.Fatalf("on %s after handoff: %s", reps[0], got)
	}
	for _, name := range names {
		if got := value(t, tc.nodes[name], k); got != "[v]" {
			t.Fatalf("via %s after handoff: %s", name, got)
		}
	}
}

// TestStandInCountersKeepEveryIncrement: increments coordinated by a
// stand-in during an outage, then by the replicas, then by the stand-in
// again during a second outage all survive the handoffs (a stand-in that
// restarted its actor's count would lose some to the merge's maximum).
func TestStandInCountersKeepEveryIncrement(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	k := tc.keyOutside(t, "n1")
	reps := tc.replicasOf(k)
	total := int64(0)
	for round := 0; round < 3; round++ {
		for _, r := range reps {
			tc.net.Down(r)
		}
		for i := 0; i < 5; i++ {
			if _, err := tc.nodes["n1"].Incr(ctx, []byte(k), 1); err != nil {
				t.Fatalf("round %d: INCR with the replicas down: %v", round, err)
			}
			total++
		}
		for _, r := range reps {
			tc.net.Register(r, tc.nodes[r].HandlePeer)
		}
		testutil.Eventually(t, 15*time.Second, "hints to drain", func() bool { return tc.hintsPending() == 0 })
		if _, err := tc.nodes[reps[0]].Incr(ctx, []byte(k), 100); err != nil {
			t.Fatal(err)
		}
		total += 100
		for _, name := range names {
			o, err := tc.nodes[name].Get(wire.WithQuorum(ctx, wire.Quorum{R: 3}), []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Cnt.Value(); got != total {
				t.Fatalf("round %d via %s: %d, want %d", round, name, got, total)
			}
		}
	}
}

// TestSlowPeerIsNotWaitedFor: a replica that is slow but not down does not
// hold up a W=2 write. A W=3 write waits for it (a stand-in's copy counts
// only for a copy that failed), so that a read of one copy through the
// slow replica right after sees the write (R+W>N): a stand-in counted
// after the 50 ms write hedge once let GET R 1 there miss an acknowledged
// SET W 3. A black-holed replica costs a W=3 write the timeout, after
// which the stand-in sent at the hedge counts; the slow replica still
// gets everything.
func TestSlowPeerIsNotWaitedFor(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	k := tc.keyLedBy(t, "n1")
	slow := tc.replicasOf(k)[2]
	tc.net.Slow(slow, 600*time.Millisecond) // inside the 1s timeout
	start := time.Now()
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("W=2 with a slow replica: %v", err)
	}
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("W=2 with one replica slow took %v: it waited for the slow one", took)
	}
	if h := tc.nodes["n1"].Stats().HintedWrites; h != 0 {
		t.Fatalf("W=2 needed %d stand-ins with only one replica slow", h)
	}
	for i, sloppy := range []wire.Sloppy{wire.SloppyYes, wire.SloppyNo} {
		v := fmt.Sprint("w", i)
		if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte(k), []byte(v), wire.WriteOptions{}); err != nil {
			t.Fatalf("W=3 with a slow replica: %v", err)
		}
		if got := valueCtx(t, wire.WithQuorum(ctx, wire.Quorum{R: 1, Sloppy: sloppy}), tc.nodes[slow], k); got != "["+v+"]" {
			t.Errorf("GET R 1 (sloppy %v) through the slow replica %s right after SET W 3 was acknowledged: %s, want [%s] (R+W>N)", sloppy, slow, got, v)
		}
	}
	// Black-holed: the W=3 write waits for the copy's timeout, then counts
	// the stand-in's.
	tc.net.Slow(slow, 0)
	var rest []string
	for _, n := range names {
		if n != slow {
			rest = append(rest, n)
		}
	}
	tc.net.Partition([]string{slow}, rest)
	hinted := tc.nodes["n1"].Stats().HintedWrites
	start = time.Now()
	if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte(k), []byte("x"), wire.WriteOptions{}); err != nil {
		t.Fatalf("W=3 with a replica black-holed: %v", err)
	}
	if took := time.Since(start); took < testTimeout || took > 3*testTimeout {
		t.Errorf("W=3 with a replica black-holed took %v, want the call's timeout (%v)", took, testTimeout)
	}
	if h := tc.nodes["n1"].Stats().HintedWrites; h != hinted+1 {
		t.Errorf("W=3 with a replica black-holed: %d stand-ins counted, want 1", h-hinted)
	}
	tc.net.Heal()
	for _, r := range tc.replicasOf(k) {
		testutil.Eventually(t, 15*time.Second, "every replica to hold the last write", func() bool { return tc.local(t, r, k) == "[x]" })
	}
	testutil.Eventually(t, 15*time.Second, "hints to drain", func() bool { return tc.hintsPending() == 0 })
}

// TestReadRepairFixesAStaleReplica: a replica that missed a write (no
// hints: handoff is off) gets it from the next read that sees both.
func TestReadRepairFixesAStaleReplica(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Handoff.Interval = -1
	})
	ctx := context.Background()
	tc.missedBy(t, "k", "n3")
	all := wire.WithQuorum(ctx, wire.Quorum{R: 3})
	if got := valueCtx(t, all, tc.nodes["n3"], "k"); got != "[v]" {
		t.Fatalf("R=3 via n3: %s", got)
	}
	testutil.Eventually(t, 15*time.Second, "read repair of n3", func() bool { return tc.local(t, "n3", "k") == "[v]" })
	// Nothing to repair now: a read of replicas that agree sends nothing.
	valueCtx(t, all, tc.nodes["n3"], "k")
	valueCtx(t, all, tc.nodes["n1"], "k")
	for _, name := range names {
		if r := tc.nodes[name].Stats().ReadRepairs; r != map[string]uint64{"n3": 1}[name] {
			t.Errorf("%s counted %d read repairs", name, r)
		}
	}
}

// TestStrictNodesRefuseWhatSloppyRequestsAccept: nodes started with
// sloppy quorum off fail a write that only stand-ins could complete, and a
// request with SLOPPY yes still gets it.
func TestStrictNodesRefuseWhatSloppyRequestsAccept(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Strict = true
	})
	ctx := context.Background()
	k := tc.keyLedBy(t, "n1")
	reps := tc.replicasOf(k)
	tc.net.Down(reps[1])
	tc.net.Down(reps[2])
	var qe *QuorumError
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); !errors.As(err, &qe) || qe.Got != 1 || qe.Need != 2 {
		t.Fatalf("strict write with two replicas down: %v", err)
	}
	// No stand-in took a copy: the only hints are the coordinator's own,
	// on its copy, for the two replicas it missed.
	if h := tc.nodes["n1"].cfg.Store.Hints(); tc.hintsPending() != 2 || h[reps[1]] != 1 || h[reps[2]] != 1 {
		t.Fatalf("a strict write left hints %v on n1, %d in all; want one on n1 for each replica down", h, tc.hintsPending())
	}
	for _, name := range names {
		if !slices.Contains(reps, name) && tc.local(t, name, k) != "[]" {
			t.Fatalf("a strict write left a copy on %s, not a replica", name)
		}
	}
	if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{Sloppy: wire.SloppyYes}), []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("SLOPPY yes on a strict node: %v", err)
	}
	if tc.hintsPending() <= 2 {
		t.Fatalf("the sloppy write left no hint on a stand-in")
	}
	if _, err := tc.nodes["n1"].Get(ctx, []byte(k)); !errors.As(err, &qe) || qe.Op != "read" {
		t.Fatalf("strict read with two replicas down: %v", err)
	}
}

// TestHintStorageBound: stand-ins whose hint storage is full refuse more
// hinted copies (counted as dropped); a write still succeeds where the
// preferred replicas give it W, and fails where only stand-ins could.
func TestHintStorageBound(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Handoff.Interval = -1
		o.MaxHints = 2
	})
	ctx := context.Background()
	tc.net.Down("n4")
	w3 := wire.WithQuorum(ctx, wire.Quorum{W: 3})
	written, refused := 0, 0
	for i := 0; i < 40; i++ {
		k := fmt.Sprint("k", i)
		if !slices.Contains(tc.replicasOf(k), "n4") {
			continue
		}
		// W=2 succeeds on the two reachable replicas, hint or no hint.
		if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
			t.Fatalf("W=2 write %s: %v", k, err)
		}
		if err := tc.nodes["n1"].Put(w3, []byte(k), []byte("w"), wire.WriteOptions{}); err != nil {
			refused++
		} else {
			written++
		}
	}
	if total := tc.hintsPending(); total > 2*len(names) {
		t.Fatalf("%d hints stored with a bound of 2 per node", total)
	}
	if refused == 0 || written == 0 {
		t.Fatalf("W=3 writes: %d written, %d refused; want both once storage fills", written, refused)
	}
	if dropped := tc.sum(func(s CoordinatorStats) uint64 { return s.HintsDropped }); dropped == 0 {
		t.Fatal("no hinted copy counted as dropped")
	}
}

// TestHintsSurviveARestartOfTheStandIn: a stand-in that restarts (its
// store closed and opened again) still holds its hints and delivers them
// once the replica is back.
func TestHintsSurviveARestartOfTheStandIn(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	dirs := map[string]string{}
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		dirs[name] = o.Dir
	})
	ctx := context.Background()
	tc.net.Down("n4")
	const keys = 20
	for i := 0; i < keys; i++ {
		if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte(fmt.Sprint("k", i)), []byte("v"), wire.WriteOptions{}); err != nil {
			t.Fatalf("W=3 with n4 down: %v", err)
		}
	}
	var standIn string
	for _, name := range names {
		if tc.nodes[name].cfg.Store.Hints()["n4"] > 0 {
			standIn = name
			break
		}
	}
	if standIn == "" {
		t.Fatal("no stand-in holds hints for n4")
	}
	pending := tc.nodes[standIn].cfg.Store.Hints()["n4"]
	// Restart the stand-in: stop its coordinator, close and reopen its store.
	old := tc.nodes[standIn]
	tc.net.Down(standIn)
	old.Close()
	if err := old.cfg.Store.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: dirs[standIn], Partitions: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if got := st.Hints()["n4"]; got != pending {
		t.Fatalf("after the restart %s holds %d hints for n4, before %d", standIn, got, pending)
	}
	cfg := old.cfg
	cfg.Store = st
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	c.SetMembers(names)
	tc.nodes[standIn] = c
	tc.net.Register(standIn, c.HandlePeer)
	tc.net.Register("n4", tc.nodes["n4"].HandlePeer)
	testutil.Eventually(t, 15*time.Second, "the restarted stand-in to deliver its hints", func() bool { return tc.hintsFor("n4") == 0 })
	for i := 0; i < keys; i++ {
		k := fmt.Sprint("k", i)
		if slices.Contains(tc.replicasOf(k), "n4") && tc.local(t, "n4", k) != "[v]" {
			t.Fatalf("%s not on n4 after the handoff", k)
		}
	}
}

// slowSync delays every fsync by d: a slow disk.
type slowSync struct{ d time.Duration }

func (s slowSync) String() string { return "slowSync" }

func (s slowSync) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		time.Sleep(s.d) // the disk's latency, not a wait for the world
	}
	return nil
}

// TestSlowLocalSyncIsNotHedged: a W=3 coordinator whose own fsync is slower
// than the write hedge waits for it rather than handing its copy to a
// stand-in (which would fsync too, and leave a hint for every write).
func TestSlowLocalSyncIsNotHedged(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		o.Sync = true
		if name == "n1" {
			o.FS = errorfs.Wrap(vfs.Default, slowSync{200 * time.Millisecond})
		}
	})
	ctx := context.Background()
	k := tc.keyLedBy(t, "n1")
	for i := 0; i < 3; i++ {
		if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte(k), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range tc.nodes {
		if h := c.Stats().HintedWrites; h != 0 {
			t.Fatalf("%s counted %d hinted copies for writes with every replica up", c.cfg.Self, h)
		}
	}
}

// TestReadRepairChanceReachesReplicasTheReadSkipped: a read asks only R
// copies; with ReadRepairChance it also checks the others afterwards and
// repairs the one that missed a write.
func TestReadRepairChanceReachesReplicasTheReadSkipped(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	for _, chance := range []float64{-1, 1} {
		tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
			cfg.Handoff.Interval = -1
			cfg.ReadRepairChance = chance
			cfg.HedgeAfter = time.Hour // no hedged ask of n3 either
		})
		// Reads via n1 ask n1 and n2, not n3.
		k := tc.keyWhere(t, "with replicas n1, n2, n3", func(reps []string) bool { return slices.Equal(reps, names) })
		tc.missedBy(t, k, "n3")
		if got := value(t, tc.nodes["n1"], k); got != "[v]" {
			t.Fatalf("R=2 via n1: %s", got)
		}
		if chance < 0 {
			// Only the asked copies are repaired: close n1 (which waits for
			// any repair in flight) and check n3 still lacks the write.
			tc.nodes["n1"].Close()
			if got := tc.local(t, "n3", k); got != "[]" {
				t.Fatalf("without read repair chance n3 was repaired: %s", got)
			}
			continue
		}
		testutil.Eventually(t, 15*time.Second, "n3 to be repaired by a read that did not need it", func() bool { return tc.local(t, "n3", k) == "[v]" })
		// n3 is up to date now: the next read's check of it repairs
		// nothing, and, like the repair, ends (copies in flight back to 0).
		testutil.Eventually(t, 15*time.Second, "the repair to end", func() bool { return tc.nodes["n1"].Stats().CopiesInFlight == 0 })
		repairs := tc.nodes["n1"].Stats().ReadRepairs
		if got := value(t, tc.nodes["n1"], k); got != "[v]" {
			t.Fatalf("R=2 via n1, every copy up to date: %s", got)
		}
		testutil.Eventually(t, 15*time.Second, "the check of an up-to-date n3 to end", func() bool { return tc.nodes["n1"].Stats().CopiesInFlight == 0 })
		if got := tc.nodes["n1"].Stats().ReadRepairs; got != repairs {
			t.Fatalf("read repairs %d after a read whose copies all agree, want %d", got, repairs)
		}
	}
}

// TestHintsForAMemberThatLeftGoToTheReplicas: hints for a node that left
// for good go to the keys' replicas, and are then deleted, so that
// hints_pending comes back to 0; hints for a name merely missing from the
// placement (a node that just started does not know every member yet) are
// kept, not sent elsewhere or dropped.
func TestHintsForAMemberThatLeftGoToTheReplicas(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestCluster(t, names, 3, 2, 2)
	// W=3: every copy, the stand-in's hint for n4 included, is stored when
	// a write returns, so none is still adding a hint when they are counted.
	ctx := wire.WithQuorum(context.Background(), wire.Quorum{W: 3})
	tc.net.Down("n4")
	acked := map[string]string{}
	for i := range 30 {
		k, v := fmt.Sprint("k", i), fmt.Sprint("v", i)
		if err := tc.nodes[names[i%3]].Put(ctx, []byte(k), []byte(v), wire.WriteOptions{}); err != nil {
			t.Fatalf("write %s with n4 down: %v", k, err)
		}
		acked[k] = v
	}
	held := tc.hintsFor("n4")
	if held == 0 {
		t.Fatal("no hints for n4: the test proves nothing")
	}
	rest := names[:3]
	for _, n := range rest {
		if err := tc.nodes[n].SetMembers(rest); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range rest {
		tc.nodes[n].handoffPass(1000)
	}
	if got := tc.hintsFor("n4"); got != held {
		t.Fatalf("hints for n4, missing from the placement but not known to have left: %d, want the %d kept", got, held)
	}
	for _, n := range rest {
		tc.nodes[n].SetLeft([]string{"n4"})
	}
	testutil.Eventually(t, 10*time.Second, "hints for n4, which left, to go to the replicas", func() bool { return tc.hintsFor("n4") == 0 })
	for k, v := range acked {
		for _, r := range tc.replicasOf(k) {
			if got := tc.local(t, r, k); got != "["+v+"]" {
				t.Fatalf("%s on replica %s after n4 left: %s, want [%s]", k, r, got, v)
			}
		}
	}
}

// TestCopiesInFlightCoverWhatHintsDoNot: a copy black-holed after its
// write's quorum is neither stored nor hinted until it fails at its
// timeout. Stats counts it in flight meanwhile, and counts it out only
// after its hint is written: hints_pending and copies_in_flight at zero
// together mean every copy landed.
func TestCopiesInFlightCoverWhatHintsDoNot(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	tc.net.Partition([]string{"n1", "n2"}, []string{"n3"})
	ctx := wire.WithQuorum(context.Background(), wire.Quorum{Sloppy: wire.SloppyNo})
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := tc.nodes["n1"].Stats().CopiesInFlight; got != 1 {
		t.Fatalf("copies in flight right after the write: %d, want the copy to n3", got)
	}
	if h := tc.hintsFor("n3"); h != 0 {
		t.Fatalf("a hint for n3 before its copy failed: %d", h)
	}
	testutil.Eventually(t, 10*time.Second, "the copy to n3 to fail", func() bool { return tc.nodes["n1"].Stats().CopiesInFlight == 0 })
	if h := tc.hintsFor("n3"); h != 1 {
		t.Fatalf("hints for n3 once no copy is in flight: %d, want 1", h)
	}
}

// TestASloppyReadAsksTheReachableReplicaBeforeStandIns: with two of a
// key's three replicas down, a sloppy read of R=2 through a node that
// stands in for one took its own empty copy first and another stand-in's
// empty one next: nil, while the third replica, reachable, held the
// acknowledged value (found in review, in a real cluster of five with
// two nodes killed).
func TestASloppyReadAsksTheReachableReplicaBeforeStandIns(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newQuietCluster(t, names, 2, 2)
	for i := 0; i < 20; i++ {
		key := fmt.Sprint("key", i)
		reps := tc.replicasOf(key)
		rank := tc.nodes["n1"].place.Load().Ranking(ring.Partition([]byte(key), 64))
		reader := rank[3] // the first fallback: it stands in for the first replica down
		if err := tc.nodes[reps[2]].Put(context.Background(), []byte(key), []byte("v"), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The first two replicas fail: the last one still holds the key.
		tc.net.Down(reps[0])
		tc.net.Down(reps[1])
		tc.setDown(names[:0], []string{reps[0], reps[1]})
		if got := value(t, tc.nodes[reader], key); got != "[v]" {
			t.Fatalf("%s (replicas %v, the first two down) read through %s, a stand-in: %s, want [v] (held by %s)", key, reps, reader, got, reps[2])
		}
		for _, r := range reps[:2] {
			tc.net.Register(r, tc.nodes[r].HandlePeer)
		}
		tc.setDown()
	}
}
