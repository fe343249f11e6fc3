package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// testTimeout bounds peer calls in these tests: generous, so that a loaded
// CI machine under the race detector does not fail a healthy quorum, and
// short enough that the tests that wait it out stay quick.
const testTimeout = time.Second

// testCluster is many coordinators in one process over a MemNetwork.
type testCluster struct {
	net   *MemNetwork
	nodes map[string]*Coordinator
	names []string
}

func newTestCluster(t testing.TB, names []string, n, r, w int) *testCluster {
	t.Helper()
	return newTestClusterSync(t, names, n, r, w, false)
}

func newTestClusterSync(t testing.TB, names []string, n, r, w int, sync bool) *testCluster {
	t.Helper()
	return newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = n, r, w
		o.Sync = sync
	})
}

// newTestClusterWith builds a cluster whose every coordinator and store
// configuration passes through tweak. Breakers and handoff run on test
// time scales: a breaker opens for 100ms, handoff looks every 20ms.
func newTestClusterWith(t testing.TB, names []string, tweak func(name string, cfg *CoordinatorConfig, o *store.Options)) *testCluster {
	t.Helper()
	tc := &testCluster{net: NewMemNetwork(), nodes: map[string]*Coordinator{}, names: names}
	for _, name := range names {
		cfg := CoordinatorConfig{Self: name, Transport: tc.net.Transport(name), Timeout: testTimeout,
			Breaker: BreakerConfig{Cooldown: 100 * time.Millisecond, MaxCooldown: 200 * time.Millisecond},
			Handoff: HandoffConfig{Interval: 20 * time.Millisecond, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}}
		o := store.Options{Dir: t.TempDir(), Partitions: 64}
		tweak(name, &cfg, &o)
		st, err := store.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
		c, err := NewCoordinator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close) // before the store closes
		if err := c.SetMembers(names); err != nil {
			t.Fatal(err)
		}
		tc.net.Register(name, c.HandlePeer)
		tc.nodes[name] = c
	}
	// Cleanups run last first: the network goes before any coordinator
	// or store, so no late copy reaches a closed store.
	t.Cleanup(tc.net.Close)
	return tc
}

func (tc *testCluster) replicasOf(key string) []string {
	_, reps, _ := tc.nodes[tc.names[0]].replicas([]byte(key))
	return reps
}

// keyWhere finds a key whose replicas (in preference order) satisfy ok.
func (tc *testCluster) keyWhere(t *testing.T, what string, ok func(reps []string) bool) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprint("key", i)
		if ok(tc.replicasOf(k)) {
			return k
		}
	}
	t.Fatalf("no key %s", what)
	return ""
}

// keyOutside finds a key none of whose replicas is node.
func (tc *testCluster) keyOutside(t *testing.T, node string) string {
	t.Helper()
	return tc.keyWhere(t, "without "+node+" as a replica", func(reps []string) bool { return !slices.Contains(reps, node) })
}

// keyLedBy finds a key whose first replica, its coordinator, is node.
func (tc *testCluster) keyLedBy(t *testing.T, node string) string {
	t.Helper()
	return tc.keyWhere(t, "led by "+node, func(reps []string) bool { return reps[0] == node })
}

func value(t *testing.T, c *Coordinator, key string) string {
	t.Helper()
	return valueCtx(t, context.Background(), c, key)
}

// valueCtx reads key through c with ctx's quorum and renders its siblings.
func valueCtx(t *testing.T, ctx context.Context, c *Coordinator, key string) string {
	t.Helper()
	o, err := c.Get(ctx, []byte(key))
	if err != nil {
		t.Fatalf("Get %s via %s: %v", key, c.cfg.Self, err)
	}
	return siblings(o)
}

// siblings renders a register's sibling values, sorted: "[a b]".
func siblings(o crdt.Object) string {
	var vals []string
	for _, s := range o.Reg.Siblings {
		vals = append(vals, string(s.Value))
	}
	slices.Sort(vals)
	return fmt.Sprint(vals)
}

// A key with more replicas than a request plans on its stack
// (maxStackCopies) is written and read like any other, all its copies
// counted, also with one replica down and a stand-in for it.
func TestMoreReplicasThanAStackPlan(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"}
	n := maxStackCopies + 2
	tc := newTestCluster(t, names, n, n, n)
	ctx := context.Background()
	if err := tc.nodes["n1"].Put(ctx, []byte("wide"), []byte("a"), wire.WriteOptions{}); err != nil {
		t.Fatalf("Put with W=%d: %v", n, err)
	}
	if v, err := tc.nodes["n2"].Incr(ctx, []byte("wide-ctr"), 5); err != nil || v != 5 {
		t.Fatalf("Incr with W=%d = %d, %v", n, v, err)
	}
	for _, name := range names {
		if got := value(t, tc.nodes[name], "wide"); got != "[a]" {
			t.Fatalf("R=%d read via %s = %s", n, name, got)
		}
	}
	reps := tc.replicasOf("wide")
	for _, r := range reps {
		if got := tc.local(t, r, "wide"); got != "[a]" {
			t.Fatalf("replica %s holds %s after a W=%d write", r, got, n)
		}
	}
	// One replica down: a sloppy write of W=N still gets N copies, one on
	// the node left out of the N, as a hint.
	tc.net.Down(reps[0])
	via := tc.nodes[reps[1]]
	if err := via.Put(ctx, []byte("wide"), []byte("b"), wire.WriteOptions{}); err != nil {
		t.Fatalf("Put with %s down: %v", reps[0], err)
	}
	if got := value(t, via, "wide"); got != "[b]" {
		t.Fatalf("read with %s down = %s", reps[0], got)
	}
}

func TestWritesAndReadsThroughAnyNode(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		key, via := fmt.Sprint("k", i), tc.nodes[names[i%5]]
		if err := via.Put(ctx, []byte(key), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatalf("Put %s via %s: %v", key, via.cfg.Self, err)
		}
	}
	for i := 0; i < 40; i++ {
		key := fmt.Sprint("k", i)
		for _, name := range names {
			if got := value(t, tc.nodes[name], key); got != fmt.Sprintf("[v%d]", i) {
				t.Fatalf("%s via %s = %s", key, name, got)
			}
		}
		// The object lives on its replicas (eventually all three) and nowhere else.
		reps := tc.replicasOf(key)
		for _, name := range names {
			st := tc.nodes[name].cfg.Store
			found := func() bool {
				_, found, _ := st.Get(ring.Partition([]byte(key), 64), []byte(key))
				return found
			}
			if slices.Contains(reps, name) {
				testutil.Eventually(t, 5*time.Second, key+" on its replica "+name, found)
			} else if found() {
				t.Fatalf("%s on %s, not one of its replicas %v", key, name, reps)
			}
		}
	}
	// A forwarded write gets the replica's errors back as they were.
	k := tc.keyOutside(t, "n1")
	if _, err := tc.nodes["n1"].Incr(ctx, []byte(k), 1); err != nil {
		t.Fatal(err)
	}
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("x"), wire.WriteOptions{}); !errors.Is(err, wire.ErrWrongType) {
		t.Fatalf("forwarded SET on a counter: %v", err)
	}
	if v, err := tc.nodes["n1"].Incr(ctx, []byte(k), 41); err != nil || v != 42 {
		t.Fatalf("forwarded INCR = %d, %v", v, err)
	}
}

func TestQuorumSurvivesOneFailureAndReportsShortfalls(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	tc.net.Down("n3")
	if err := tc.nodes["n1"].Put(ctx, []byte("a"), []byte("1"), wire.WriteOptions{}); err != nil {
		t.Fatalf("W=2 with one replica down: %v", err)
	}
	if got := value(t, tc.nodes["n2"], "a"); got != "[1]" {
		t.Fatalf("R=2 with one replica down: %s", got)
	}
	// W=3 cannot be met: the error says how many answered of how many.
	strict, _ := NewCoordinator(CoordinatorConfig{Self: "n1", Store: tc.nodes["n1"].cfg.Store, Transport: tc.net.Transport("n1"), W: 3, Timeout: testTimeout})
	defer strict.Close()
	strict.SetMembers(names)
	var qe *QuorumError
	if err := strict.Put(ctx, []byte("a"), []byte("2"), wire.WriteOptions{}); !errors.As(err, &qe) || qe.Got != 2 || qe.Need != 3 {
		t.Fatalf("W=3 with one replica down: %v", err)
	}
	// The same through a per-request W, as SET key value W 3 gives it.
	if err := tc.nodes["n1"].Put(wire.WithQuorum(ctx, wire.Quorum{W: 3}), []byte("a"), []byte("2"), wire.WriteOptions{}); !errors.As(err, &qe) || qe.Got != 2 || qe.Need != 3 {
		t.Fatalf("per-request W=3 with one replica down: %v", err)
	}
	if _, err := tc.nodes["n1"].Get(wire.WithQuorum(ctx, wire.Quorum{R: 4}), []byte("a")); err == nil {
		t.Fatal("R=4 with N=3 accepted")
	}
	// Black-holed rather than down: the call waits for its deadline, and the
	// request still fails in bounded time.
	tc.net.Partition([]string{"n1"}, []string{"n2", "n3"})
	start := time.Now()
	err := tc.nodes["n1"].Put(ctx, []byte("b"), []byte("1"), wire.WriteOptions{})
	if !errors.As(err, &qe) || qe.Got != 1 || qe.Need != 2 {
		t.Fatalf("W=2 with both peers black-holed: %v", err)
	}
	if took := time.Since(start); took > 3*testTimeout {
		t.Fatalf("the failing write took %v (timeout %v)", took, testTimeout)
	}
	if _, err := tc.nodes["n1"].Get(ctx, []byte("b")); !errors.As(err, &qe) || qe.Op != "read" || qe.Got != 1 {
		t.Fatalf("R=2 alone: %v", err)
	}
}

func TestConcurrentWritesBecomeSiblingsThatAContextResolves(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	// n1 and n2 cannot see each other; both reach n3.
	tc.net.Partition([]string{"n1"}, []string{"n2"})
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("a"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tc.nodes["n2"].Put(ctx, []byte("k"), []byte("b"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tc.net.Heal()
	if got := value(t, tc.nodes["n3"], "k"); got != "[a b]" {
		t.Fatalf("concurrent writes through n1 and n2: %s, want siblings [a b]", got)
	}
	// The client reads both and writes the resolution with their context.
	o, err := tc.nodes["n3"].Get(ctx, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("ab"), wire.WriteOptions{Context: o.Reg.Context, HasContext: true}); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		testutil.Eventually(t, 5*time.Second, "the resolution alone via "+name, func() bool { return value(t, tc.nodes[name], "k") == "[ab]" })
	}
	// DEL through any node removes it everywhere (it reads first).
	if existed, err := tc.nodes["n2"].Delete(ctx, []byte("k"), wire.WriteOptions{}); err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	if got := value(t, tc.nodes["n3"], "k"); got != "[]" {
		t.Fatalf("after DEL: %s", got)
	}
}

func TestCountersThroughEveryNodeAddUp(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := tc.nodes[name].Incr(ctx, []byte("hits"), 2); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, name := range names {
		o, err := tc.nodes[name].Get(ctx, []byte("hits"))
		if err != nil {
			t.Fatal(err)
		}
		// Every increment reached W=2 replicas and a read asks R=2 of
		// the 3, so R+W > N: the read sees every acknowledged increment.
		if got := o.Cnt.Value(); got != 200 {
			t.Fatalf("counter via %s = %d, want 200", name, got)
		}
	}
}

func TestForwardingSkipsAReplicaThatIsDown(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	k := tc.keyOutside(t, "n1")
	tc.net.Down(tc.replicasOf(k)[0])
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("forwarded write with the first replica down: %v", err)
	}
	if got := value(t, tc.nodes["n1"], k); got != "[v]" {
		t.Fatalf("read back: %s", got)
	}
	if _, err := tc.nodes["n1"].HandlePeer(ctx, "put", [][]byte{[]byte(k), []byte("v"), []byte("-"), []byte("2"), []byte("1")}); !errors.Is(err, errNotReplica) {
		t.Fatalf("a forwarded write reaching a non-replica: %v", err)
	}
	if _, err := tc.nodes["n1"].HandlePeer(ctx, "nope", nil); err == nil {
		t.Fatal("unknown peer method accepted")
	}
}

func TestSlowPeersWithinAndPastTheTimeout(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	tc.net.SetDelay(50 * time.Millisecond) // slow, but well inside the timeout
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("write with slow peers: %v", err)
	}
	if got := value(t, tc.nodes["n2"], "k"); got != "[v]" {
		t.Fatalf("read with slow peers: %s", got)
	}
	tc.net.SetDelay(10 * testTimeout) // past it: the request fails, in bounded time
	start := time.Now()
	var qe *QuorumError
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("w"), wire.WriteOptions{}); !errors.As(err, &qe) || qe.Got != 1 {
		t.Fatalf("write with peers slower than the timeout: %v", err)
	}
	if took := time.Since(start); took > 3*testTimeout {
		t.Fatalf("the write waited %v for peers past its %v timeout", took, testTimeout)
	}
}

// TestDurableStoresCountTheLocalCopyAfterItsSync runs the write path with
// fsyncing stores, where the coordinator's own copy is counted only once
// its fsync is done, concurrently with the other replicas.
func TestDurableStoresCountTheLocalCopyAfterItsSync(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterSync(t, names, 3, 2, 3, true)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := tc.nodes[names[i%3]].Put(ctx, []byte(fmt.Sprint("k", i)), []byte("v"), wire.WriteOptions{}); err != nil {
			t.Fatalf("W=3 with every replica up: %v", err)
		}
	}
	for i := 0; i < 20; i++ {
		for _, name := range names { // W=3: every replica holds it already
			o, found, err := tc.nodes[name].cfg.Store.Get(ring.Partition([]byte(fmt.Sprint("k", i)), 64), []byte(fmt.Sprint("k", i)))
			if err != nil || !found || !o.Reg.Live() {
				t.Fatalf("k%d not on %s after a W=3 write: %v", i, name, err)
			}
		}
	}
	tc.net.Down("n3")
	var qe *QuorumError
	if err := tc.nodes["n1"].Put(ctx, []byte("x"), []byte("v"), wire.WriteOptions{}); !errors.As(err, &qe) || qe.Got != 2 || qe.Need != 3 {
		t.Fatalf("W=3 with n3 down: %v", err)
	}
}

// TestReadsHedgePastABlackHoledReplica: a read asks R replicas; when one
// of them does not answer within the hedge delay it asks the next, so a
// black-holed replica costs the read the hedge delay, not the timeout.
func TestReadsHedgePastABlackHoledReplica(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := tc.nodes["n1"].Put(ctx, []byte(fmt.Sprint("k", i)), []byte("v"), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, hole := range []string{"n2", "n3"} {
		tc.net.Heal()
		tc.net.Partition([]string{"n1"}, []string{hole})
		for i := 0; i < 10; i++ {
			start := time.Now()
			if got := value(t, tc.nodes["n1"], fmt.Sprint("k", i)); got != "[v]" {
				t.Fatalf("k%d with %s black-holed: %s", i, hole, got)
			}
			if took := time.Since(start); took > testTimeout/2 {
				t.Fatalf("k%d with %s black-holed took %v: waited for the black hole", i, hole, took)
			}
		}
	}
}

// TestLateCopiesKeepTheirKey: a copy sent after the quorum answered (a
// straggler) must still go under the key it was written to. The wire
// layer reuses a connection's read buffer for the next command once a
// request returns, so a coordinator that kept the caller's key slice for
// its late calls stored the object under whatever the next command's
// bytes were (seen as replicas that silently missed 1 to 3% of the writes
// of redis-benchmark -c 50 against a 3-process cluster).
func TestLateCopiesKeepTheirKey(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, 3, 2, 2)
	tc.net.Slow("n3", 30*time.Millisecond) // n3's copies land after n1's and n2's acks
	ctx := context.Background()
	n1 := tc.nodes["n1"]

	key := []byte("apple")
	if err := n1.Put(ctx, key, []byte("v1"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	copy(key, "zebra") // the buffer now holds the next command
	ckey := []byte("count")
	if _, err := n1.Incr(ctx, ckey, 5); err != nil {
		t.Fatal(err)
	}
	copy(ckey, "cxxxx")

	testutil.Eventually(t, 2*time.Second, "n3 holds apple and count", func() bool {
		return tc.local(t, "n3", "apple") == "[v1]" && tc.count(t, "n3", "count") == 5
	})
	for _, k := range []string{"zebra", "cxxxx"} {
		for _, n := range []string{"n1", "n2", "n3"} {
			if o := tc.object(t, n, k); o.Kind() != crdt.KindNone {
				t.Errorf("%s holds %q, which nobody wrote: %v", n, k, o)
			}
		}
	}
}

// object is node's local object for key.
func (tc *testCluster) object(t *testing.T, node, key string) crdt.Object {
	t.Helper()
	o, _, err := tc.nodes[node].cfg.Store.Get(ring.Partition([]byte(key), 64), []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// count is node's local counter value for key.
func (tc *testCluster) count(t *testing.T, node, key string) int64 {
	t.Helper()
	return tc.object(t, node, key).Cnt.Value()
}

// replyLost is a transport whose first call of method to a node is
// applied there and then reported as a broken connection, as when the
// peer dies, or the link breaks, between applying a request and replying.
type replyLost struct {
	Transport
	method string
	once   sync.Once
}

func (r *replyLost) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	res, err := r.Transport.Call(ctx, to, method, args...)
	lost := false
	if method == r.method && err == nil {
		r.once.Do(func() { lost = true })
	}
	if lost {
		return nil, fmt.Errorf("%w: connection reset by peer", wire.ErrPeerUnavailable)
	}
	return res, err
}

// TestForwardedWriteIsNotRetriedOnAnotherReplicaAfterItMayHaveApplied: a
// write forwarded to a replica whose reply is lost may have been applied
// there; sending it to the next replica would apply it twice (an INCR
// counted twice). Only a call that never left this node (refused dial,
// open breaker, a node known down) may go to the next replica.
func TestForwardedWriteIsNotRetriedOnAnotherReplicaAfterItMayHaveApplied(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	var lossy *replyLost
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		if name == "n1" {
			lossy = &replyLost{Transport: cfg.Transport, method: "incr"}
			cfg.Transport = lossy
		}
	})
	ctx := context.Background()
	k := tc.keyOutside(t, "n1")
	_, err := tc.nodes["n1"].Incr(ctx, []byte(k), 1)
	if err == nil {
		t.Fatal("the forwarded INCR whose reply was lost succeeded: it was sent again elsewhere")
	}
	o, err2 := tc.nodes[tc.replicasOf(k)[0]].Get(wire.WithQuorum(ctx, wire.Quorum{R: 3}), []byte(k))
	if err2 != nil || o.Cnt.Value() != 1 {
		t.Fatalf("counter after one INCR = %d, %v; want 1 (the error was %v)", o.Cnt.Value(), err2, err)
	}
	// A replica that is down (the call cannot be made) is still skipped.
	tc.net.Down(tc.replicasOf(k)[0])
	if _, err := tc.nodes["n1"].Incr(ctx, []byte(k), 1); err != nil {
		t.Fatalf("forwarded INCR with the first replica down: %v", err)
	}
}

// TestReadsMergeWhatEachCopyHolds: a read takes a replica's copy for this
// node's own, unmerged, only when the two encodings are the same; a copy
// that differs, by a sibling or by being missing on either side, is merged
// in. Read repair is off: what the read returns is what it merged.
func TestReadsMergeWhatEachCopyHolds(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newQuietCluster(t, names, 2, 2)
	ctx := context.Background()
	all := wire.WithQuorum(ctx, wire.Quorum{R: 3})
	// The copy on n1 (the coordinator) missing, then the others'.
	tc.missedBy(t, "only-remote", "n1")
	tc.missedBy(t, "only-local-a", "n2")
	tc.missedBy(t, "only-local-a", "n3")
	for key, want := range map[string]string{"only-remote": "[v]", "only-local-a": "[v]"} {
		for _, q := range []context.Context{ctx, all} {
			if got := valueCtx(t, q, tc.nodes["n1"], key); got != want {
				t.Errorf("read of %s via n1 (n1 holds %s): %s, want %s", key, tc.local(t, "n1", key), got, want)
			}
		}
	}
	// A sibling only the remote copies hold, beside one every copy holds.
	tc.putEverywhere(t, "sib", "a")
	tc.mergeConcurrent(t, "sib", "b", "n2", "n3")
	if got := valueCtx(t, ctx, tc.nodes["n1"], "sib"); got != "[a b]" {
		t.Errorf("read of sib via n1 (n1 holds %s, n2 %s): %s, want [a b]", tc.local(t, "n1", "sib"), tc.local(t, "n2", "sib"), got)
	}
	// Copies in agreement: the read returns them as they are.
	tc.putEverywhere(t, "same", "s")
	for _, q := range []context.Context{ctx, all} {
		if got := valueCtx(t, q, tc.nodes["n1"], "same"); got != "[s]" {
			t.Errorf("read of same via n1: %s, want [s]", got)
		}
	}
}

// putEverywhere writes value to key through n1 and waits until every node
// of the cluster holds exactly it.
func (tc *testCluster) putEverywhere(t *testing.T, key, value string) {
	t.Helper()
	if err := tc.nodes["n1"].Put(context.Background(), []byte(key), []byte(value), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "[" + value + "]"
	testutil.Eventually(t, 5*time.Second, "every copy of "+key, func() bool {
		for name := range tc.nodes {
			if tc.local(t, name, key) != want {
				return false
			}
		}
		return true
	})
}

// mergeConcurrent merges value into key's copies on the named nodes'
// stores, as a sibling written by an actor no node has, without a
// context: concurrent with whatever they hold.
func (tc *testCluster) mergeConcurrent(t *testing.T, key, value string, names ...string) {
	t.Helper()
	var other crdt.Object
	other.Reg = other.Reg.Update(0xfeed, nil, []byte(value), false, 2)
	tc.mergeInto(t, key, other, names...)
}

// mergeInto merges o into the named nodes' own copies of key, as a copy
// reaching only them would.
func (tc *testCluster) mergeInto(t *testing.T, key string, o crdt.Object, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := tc.nodes[name].cfg.Store.Merge(ring.Partition([]byte(key), 64), []byte(key), o); err != nil {
			t.Fatal(err)
		}
	}
}

// newQuietCluster is a cluster of N=3 with read repair and handoff off:
// each copy holds what a test put there, and a read returns what it
// merged.
func newQuietCluster(t *testing.T, names []string, r, w int) *testCluster {
	t.Helper()
	return newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, r, w
		cfg.ReadRepairChance = 0
		cfg.Handoff.Interval = -1
	})
}

// A read of R=1 on a replica is answered by the replica's own copy, taken
// at once: it asks no other replica, so it neither sees what only they
// hold nor needs them up.
func TestAReadOfOneIsAnsweredByTheOwnCopy(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newQuietCluster(t, names, 1, 3)
	ctx := context.Background()
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("a"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tc.mergeConcurrent(t, "k", "b", "n2", "n3")
	if got := valueCtx(t, ctx, tc.nodes["n1"], "k"); got != "[a]" {
		t.Errorf("R=1 read via n1 = %s, want n1's own copy [a]", got)
	}
	if got := tc.local(t, "n2", "k"); got != "[a b]" {
		t.Fatalf("n2 holds %s, want [a b]", got)
	}
	tc.net.Down("n2")
	tc.net.Down("n3")
	if got := valueCtx(t, ctx, tc.nodes["n1"], "k"); got != "[a]" {
		t.Errorf("R=1 read via n1 with the other replicas down = %s, want [a]", got)
	}
	if _, err := tc.nodes["n1"].Get(wire.WithQuorum(ctx, wire.Quorum{R: 2}), []byte("k")); err == nil {
		t.Error("R=2 read with two of three replicas down succeeded")
	}
}

// queuedSet is a queuedTransport saying calls wait for the members in it.
type queuedSet map[string]bool

func (q queuedSet) Queued(to string) bool { return q[to] }

// TestPreferQueued: the first preferred replica with calls waiting moves
// to the front, the others keep their order; a first copy with calls
// waiting, or a stand-in in front, leaves the order as it is, and a
// stand-in is never moved forward.
func TestPreferQueued(t *testing.T) {
	rep := func(n string) copySlot { return copySlot{node: n} }
	standIn := func(n, f string) copySlot { return copySlot{node: n, hintFor: f} }
	for _, tt := range []struct {
		name   string
		in     []copySlot
		queued queuedSet
		want   []copySlot
	}{
		{"none waiting", []copySlot{rep("a"), rep("b"), rep("c")}, nil, []copySlot{rep("a"), rep("b"), rep("c")}},
		{"the first waiting", []copySlot{rep("a"), rep("b")}, queuedSet{"a": true, "b": true}, []copySlot{rep("a"), rep("b")}},
		{"the second waiting", []copySlot{rep("a"), rep("b")}, queuedSet{"b": true}, []copySlot{rep("b"), rep("a")}},
		{"the third waiting", []copySlot{rep("a"), rep("b"), rep("c")}, queuedSet{"c": true}, []copySlot{rep("c"), rep("a"), rep("b")}},
		{"the first of two waiting", []copySlot{rep("a"), rep("b"), rep("c")}, queuedSet{"b": true, "c": true}, []copySlot{rep("b"), rep("a"), rep("c")}},
		{"a stand-in waiting", []copySlot{rep("a"), standIn("x", "b")}, queuedSet{"x": true}, []copySlot{rep("a"), standIn("x", "b")}},
		{"a stand-in in front", []copySlot{standIn("x", "a"), rep("b")}, queuedSet{"b": true}, []copySlot{standIn("x", "a"), rep("b")}},
		{"one copy", []copySlot{rep("a")}, queuedSet{"a": true}, []copySlot{rep("a")}},
		{"no copy", nil, queuedSet{"a": true}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Clone(tt.in)
			preferQueued(got, tt.queued)
			if !slices.Equal(got, tt.want) {
				t.Errorf("preferQueued(%v) with %v waiting = %v, want %v", tt.in, tt.queued, got, tt.want)
			}
		})
	}
}

// queuedCalls is a transport whose Queued reports the members in waiting,
// and which counts the reads each member is asked.
type queuedCalls struct {
	Transport
	mu      sync.Mutex
	waiting queuedSet
	gets    map[string]int
}

func (q *queuedCalls) Queued(to string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting[to]
}

func (q *queuedCalls) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	if method == "get" {
		q.mu.Lock()
		q.gets[to]++
		q.mu.Unlock()
	}
	return q.Transport.Call(ctx, to, method, args...)
}

// TestReadsAskAReplicaAlreadyBeingWrittenTo: a quorum read that needs one
// remote answer asks the replica whose connection has calls waiting to be
// written, and, when none has, the first in preference order; the answer
// is the value either way.
func TestReadsAskAReplicaAlreadyBeingWrittenTo(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	var tr *queuedCalls
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		cfg.ReadRepairChance = -1 // only the read's own calls
		if name == "n1" {
			tr = &queuedCalls{Transport: cfg.Transport, gets: map[string]int{}}
			cfg.Transport = tr
		}
	})
	ctx := context.Background()
	const key = "k"
	if err := tc.nodes["n1"].Put(ctx, []byte(key), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var remotes []string // in preference order
	for _, r := range tc.replicasOf(key) {
		if r != "n1" {
			remotes = append(remotes, r)
		}
	}
	first, second := remotes[0], remotes[1]
	for _, tt := range []struct {
		waiting queuedSet
		want    string
	}{
		{nil, first},
		{queuedSet{second: true}, second},
		{queuedSet{first: true, second: true}, first},
		{queuedSet{first: true}, first},
	} {
		tr.mu.Lock()
		tr.waiting, tr.gets = tt.waiting, map[string]int{}
		tr.mu.Unlock()
		if got := valueCtx(t, ctx, tc.nodes["n1"], key); got != "[v]" {
			t.Fatalf("read with %v waiting = %s, want [v]", tt.waiting, got)
		}
		tr.mu.Lock()
		gets := maps.Clone(tr.gets)
		tr.mu.Unlock()
		if len(gets) != 1 || gets[tt.want] != 1 {
			t.Errorf("read with %v waiting asked %v, want only %s", tt.waiting, gets, tt.want)
		}
	}
}
