package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// TestPipelinedClusterWritesWaitForTheirQuorumTogether: a coordinator
// given a wire.SyncGroup (the client has more commands buffered) applies
// its copy, hands the quorum wait to the group and returns, so the writes
// of a pipeline replicate concurrently. When the group's waits return, each
// write is on W replicas; several writes of one key, whose copies may
// reach a replica in any order, end as the last one alone.
func TestPipelinedClusterWritesWaitForTheirQuorumTogether(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, 3, 2, 2)
	tc.net.Slow("n3", 20*time.Millisecond) // the quorum is n1 and n2; n3's copies lag
	n1 := tc.nodes["n1"]
	var g wire.SyncGroup
	ctx := wire.WithSyncGroup(context.Background(), &g)

	const writes = 20
	for i := 1; i <= writes; i++ {
		if err := n1.Put(ctx, []byte("k"), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n1.Put(ctx, []byte(fmt.Sprint("key", i)), []byte("x"), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := n1.Incr(ctx, []byte("count"), 7)
	if err != nil || v != 7 {
		t.Fatalf("deferred INCR returned %d, %v", v, err)
	}
	if got := g.Pending(); got != 2*writes+1 {
		t.Fatalf("%d waits deferred, want %d: the coordinator waited for its quorums one by one", got, 2*writes+1)
	}
	if got := tc.local(t, "n1", "k"); got != fmt.Sprintf("[v%d]", writes) {
		t.Fatalf("n1's own copy before the waits: %s (the next command must see the last write)", got)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Stored means on W=2 replicas: n1 and n2 (n3 is slower than both).
	for _, node := range []string{"n1", "n2"} {
		if got := tc.local(t, node, "k"); got != fmt.Sprintf("[v%d]", writes) {
			t.Errorf("%s holds k = %s after the quorum waits, want [v%d]", node, got, writes)
		}
		for i := 1; i <= writes; i++ {
			if got := tc.local(t, node, fmt.Sprint("key", i)); got != "[x]" {
				t.Errorf("%s holds key%d = %s after the quorum waits", node, i, got)
			}
		}
		if got := tc.count(t, node, "count"); got != 7 {
			t.Errorf("%s holds count = %d", node, got)
		}
	}
	// Even if n3 got them out of order, it ends with the last write alone.
	testutil.Eventually(t, 5*time.Second, "n3 holds the last write of k", func() bool { return tc.local(t, "n3", "k") == fmt.Sprintf("[v%d]", writes) })
}

// TestPipelinedClusterWriteWithoutQuorumGetsTheError: a deferred write
// that cannot reach W replicas reports the quorum error from its wait.
func TestPipelinedClusterWriteWithoutQuorumGetsTheError(t *testing.T) {
	tc := newTestClusterWith(t, []string{"n1", "n2", "n3"}, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W, cfg.Strict = 3, 2, 2, true
		cfg.Timeout = 200 * time.Millisecond
	})
	tc.net.Partition([]string{"n1"}, []string{"n2", "n3"})
	var g wire.SyncGroup
	ctx := wire.WithSyncGroup(context.Background(), &g)
	if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("the deferred write failed before its wait: %v", err)
	}
	var qe *QuorumError
	if err := g.Wait(); !errors.As(err, &qe) {
		t.Fatalf("wait returned %v, want a QuorumError", err)
	}
}

// TestForwardedPipelinedWritesStayInOrder: a coordinator that is not a
// replica of the key forwards a pipeline's SETs in the background, all
// of them at once (their waits deferred), from one buffer the caller
// reuses as the RESP reader does. The replica must apply them in the
// client's order, a read of the key through the same node in the middle
// of the pipeline must see the writes before it, and an INCR of another
// key, forwarded in line, must not be held up by them.
func TestForwardedPipelinedWritesStayInOrder(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, 3, 2, 2)
	k := tc.keyOutside(t, "n1")
	var g wire.SyncGroup
	ctx := wire.WithSyncGroup(context.Background(), &g)
	buf := make([]byte, 0, 64)
	const writes = 50
	for i := 1; i <= writes; i++ {
		buf = append(append(buf[:0], k...), fmt.Sprint("v", i)...) // key then value, in one reused buffer
		if err := tc.nodes["n1"].Put(ctx, buf[:len(k)], buf[len(k):], wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if i == writes/2 {
			if got := value(t, tc.nodes["n1"], k); got != fmt.Sprintf("[v%d]", i) {
				t.Fatalf("a read through n1 after its pipeline's write v%d: %s", i, got)
			}
		}
	}
	if g.Pending() == 0 {
		t.Fatal("the forwarded SETs were not deferred: the pipeline waited for each")
	}
	if _, err := tc.nodes["n1"].Incr(ctx, []byte(tc.keyOutside(t, "n1")+"-counter"), 1); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, r := range tc.replicasOf(k) {
		testutil.Eventually(t, 5*time.Second, r+" to hold the last write alone", func() bool { return tc.local(t, r, k) == fmt.Sprintf("[v%d]", writes) })
	}
	if got := value(t, tc.nodes["n1"], k); got != fmt.Sprintf("[v%d]", writes) {
		t.Fatalf("after forwarded writes v1..v%d: %s", writes, got)
	}

	// Distinct keys through the same reused buffer: each write must land
	// under its own key with its own value.
	var keys []string
	for i := 0; len(keys) < 30; i++ {
		if key := fmt.Sprint("fk", i); !slices.Contains(tc.replicasOf(key), "n1") {
			keys = append(keys, key)
		}
	}
	for i, key := range keys {
		buf = append(append(buf[:0], key...), fmt.Sprint("w", i)...)
		if err := tc.nodes["n1"].Put(ctx, buf[:len(key)], buf[len(key):], wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		if got := value(t, tc.nodes["n1"], key); got != fmt.Sprintf("[w%d]", i) {
			t.Errorf("%s after a pipeline of forwarded SETs from one reused buffer: %s, want [w%d]", key, got, i)
		}
	}
}

// TestPipelinedClusterWritesDoNotKeepTheCallersBuffers: wire.Backend's
// keys and values are only valid during the call (the RESP reader parses
// the next command of the pipeline into the same buffer). A coordinator
// that defers a write's replication must not read them later: copies of
// a deferred write used to carry whatever bytes the buffer held by then,
// so the other replicas stored another key's value, with the write's own
// dot, where no read repair could tell.
func TestPipelinedClusterWritesDoNotKeepTheCallersBuffers(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, 3, 2, 2)
	tc.net.Slow("n3", 5*time.Millisecond) // some copies are sent after Put returned
	n1 := tc.nodes["n1"]
	var g wire.SyncGroup
	ctx := wire.WithSyncGroup(context.Background(), &g)
	buf := make([]byte, 16) // one buffer for every command, as the reader's
	const writes = 50
	for i := range writes {
		key := fmt.Appendf(buf[:0], "key%d", i)
		value := fmt.Appendf(buf[len(key):len(key)], "value%d", i)
		if err := n1.Put(ctx, key, value, wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		for j := range buf { // the next command overwrites the buffer
			buf[j] = '#'
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var wrong string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		wrong = ""
		for i := range writes {
			for _, node := range []string{"n1", "n2", "n3"} {
				if got := tc.local(t, node, fmt.Sprint("key", i)); got != fmt.Sprintf("[value%d]", i) && wrong == "" {
					wrong = fmt.Sprintf("%s holds key%d = %s, want [value%d]", node, i, got, i)
				}
			}
		}
		if wrong == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(wrong)
		}
	}
}

// TestPipelinedWritesStayInOrderAcrossAPlacementChange: a node forwarding
// a pipeline's SETs of a key (it is no replica of it) becomes a replica
// of the key mid-pipeline, and coordinates the pipeline's next SET
// itself. That SET must not be lost behind the earlier ones: if its copy
// reached the replica that coordinates a forwarded SET first, the
// forwarded one would read it and overwrite it. The coordinator waits for
// the key's forwards in flight, so the last write survives (as a sibling
// at least: the new replica coordinates it without the earlier writes'
// history, which handoff and repair would bring).
func TestPipelinedWritesStayInOrderAcrossAPlacementChange(t *testing.T) {
	tc := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, 3, 2, 2)
	k := tc.keyOutside(t, "n1")
	reps := tc.replicasOf(k)
	first := reps[0] // where n1 forwards to
	tc.net.Slow(first, 20*time.Millisecond)
	var g wire.SyncGroup
	ctx := wire.WithSyncGroup(context.Background(), &g)
	n1 := tc.nodes["n1"]
	for i := 1; i <= 5; i++ {
		if err := n1.Put(ctx, []byte(k), []byte(fmt.Sprint("v", i)), wire.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// n1 stops seeing the last of k's replicas: of three members, all
	// three hold every key, n1 among them.
	view := []string{"n1", reps[0], reps[1]}
	if err := n1.SetMembers(view); err != nil {
		t.Fatal(err)
	}
	if _, rs, _ := n1.replicas([]byte(k)); !slices.Contains(rs, "n1") {
		t.Fatalf("n1 is no replica of %s in view %v: %v", k, view, rs)
	}
	if err := n1.Put(ctx, []byte(k), []byte("v6"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{reps[0], reps[1]} {
		testutil.Eventually(t, 5*time.Second, r+" to hold v6", func() bool { return strings.Contains(tc.local(t, r, k), "v6") })
	}
	for _, r := range []string{reps[0], reps[1]} {
		if got := tc.local(t, r, k); !strings.Contains(got, "v6") || strings.Contains(got, "v4") {
			t.Errorf("%s holds %s: want v6, the pipeline's last SET (with v5 at most)", r, got)
		}
	}
}
