package node

import (
	"context"
	"testing"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/wire"
)

// TestDelOfACounterDeletesWhatTheReadFound: a DEL without a context
// deletes what its quorum read finds. For a counter that includes
// increments the coordinator's own copy has not received yet (acknowledged
// by W=2 of the others): DEL answers 1, and the counter is gone, not back
// with them on the next read. Through the coordinator and forwarded.
// (Found in review: only the coordinator's own copy was reset.)
func TestDelOfACounterDeletesWhatTheReadFound(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestCluster(t, names, 3, 2, 2)
	ctx := context.Background()
	for _, via := range []string{"coordinator", "forwarded"} {
		k := "counter-" + via
		reps := tc.replicasOf(k)
		coord, others := reps[0], reps[1:]
		entry := coord
		if via == "forwarded" {
			for _, n := range names {
				if n != reps[0] && n != reps[1] && n != reps[2] {
					entry = n // holds no copy: forwards the DEL to a replica
				}
			}
		}
		// Five increments by another actor reached two replicas (W=2),
		// not the coordinator's copy.
		var other crdt.Object
		other.Cnt, _ = other.Cnt.Add(0xfeed, 5)
		tc.mergeInto(t, k, other, others...)
		existed, err := tc.nodes[entry].Delete(ctx, []byte(k), wire.WriteOptions{})
		if err != nil || !existed {
			t.Fatalf("%s: Delete = %v, %v; want true", via, existed, err)
		}
		for _, n := range reps {
			o, err := tc.nodes[n].Get(ctx, []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if o.Kind() != crdt.KindNone {
				t.Fatalf("%s: after DEL answered 1, a quorum read through %s finds a %v of %d", via, n, o.Kind(), o.Cnt.Value())
			}
		}
	}
}
