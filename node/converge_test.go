package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/wire"
)

// TestEveryReplicaGetsEveryAcknowledgedWrite: nodes go down and come back
// at random while writes and increments go through random live nodes.
// Once all are back and every hint is delivered, every preferred replica
// of a key must hold every write acknowledged for it, with no read to
// repair anything: each copy that did not reach its replica was covered
// by a hint, on a stand-in or on the coordinator. The registers are
// written with an empty context, so every value stays as a sibling and a
// missing one cannot hide behind a newer write; counters must count every
// acknowledged increment and no more than were attempted. It runs with 3
// nodes (no stand-ins) and 4 (stand-ins for one replica down at a time).
func TestEveryReplicaGetsEveryAcknowledgedWrite(t *testing.T) {
	for _, names := range [][]string{{"n1", "n2", "n3"}, {"n1", "n2", "n3", "n4"}} {
		t.Run(fmt.Sprint(len(names), "nodes"), func(t *testing.T) {
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			tc := newTestCluster(t, names, 3, 2, 2)
			ctx := context.Background()
			down := map[string]bool{}
			acked := map[string][]string{} // key -> values acknowledged
			ackedIncr, triedIncr := map[string]int64{}, map[string]int64{}
			for step := range 300 {
				if rng.IntN(10) == 0 { // a node goes down or comes back
					n := names[rng.IntN(len(names))]
					if down[n] {
						tc.net.Register(n, tc.nodes[n].HandlePeer)
						delete(down, n)
					} else if len(down) < len(names)-2 {
						tc.net.Down(n)
						down[n] = true
					}
				}
				var live []string
				for _, n := range names {
					if !down[n] {
						live = append(live, n)
					}
				}
				coord := tc.nodes[live[rng.IntN(len(live))]]
				key := fmt.Sprint("k", rng.IntN(12))
				if rng.IntN(3) == 0 {
					triedIncr[key]++
					if _, err := coord.Incr(ctx, []byte("c"+key), 1); err == nil {
						ackedIncr[key]++
					}
					continue
				}
				v := fmt.Sprint("v", step)
				if err := coord.Put(ctx, []byte(key), []byte(v), wire.WriteOptions{HasContext: true, Context: crdt.Context{}}); err == nil {
					acked[key] = append(acked[key], v)
				}
			}
			for n := range down {
				tc.net.Register(n, tc.nodes[n].HandlePeer)
			}
			testutil.Eventually(t, 20*time.Second, "every hint delivered", func() bool { return tc.hintsPending() == 0 })
			checked := 0
			for key, values := range acked {
				for _, r := range tc.replicasOf(key) {
					o := tc.object(t, r, key)
					for _, v := range values {
						if !slices.ContainsFunc(o.Reg.Siblings, func(s crdt.Sibling) bool { return string(s.Value) == v }) {
							t.Fatalf("replica %s of %s lacks the acknowledged write %s; it holds %s", r, key, v, siblings(o))
						}
						checked++
					}
				}
			}
			for key, n := range ackedIncr {
				for _, r := range tc.replicasOf("c" + key) {
					if got := tc.count(t, r, "c"+key); got < n || got > triedIncr[key] {
						t.Fatalf("replica %s of c%s counts %d; %d increments were acknowledged, %d tried", r, key, got, n, triedIncr[key])
					}
				}
			}
			if checked == 0 {
				t.Fatal("no write was acknowledged: the test proves nothing")
			}
			t.Logf("%d acknowledged copies checked on their replicas", checked)
		})
	}
}
