package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
)

// connKiller fails a merge whose object is over limit as a peer server
// whose reader limits (MaxBulk/MaxRequest) the copy exceeds does: it
// closes the connection, so the caller sees a transport error, not a
// PeerError.
type connKiller struct {
	Transport
	limit int
}

func (k connKiller) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	if method == "merge" && len(args) == 2 && len(args[1]) > k.limit {
		return nil, errors.New("connection closed by peer")
	}
	return k.Transport.Call(ctx, to, method, args...)
}

// TestAHintThatBreaksTheConnectionDoesNotHoldUpTheOthers: a hint whose
// copy the target's peer server cannot read (an object past its limits,
// which concurrent merges can make) fails as a transport error, not the
// target's answer, so the pass ended there, and every pass stopped at it
// again: the target's later hints were never delivered. After
// stuckHintPasses passes the passes go on past it.
func TestAHintThatBreaksTheConnectionDoesNotHoldUpTheOthers(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		cfg.Transport = connKiller{cfg.Transport, 1000}
	})
	// A big key whose hint comes first (lower partition), a small one after.
	var big, small string
	for i := 0; big == "" || small == ""; i++ {
		k := fmt.Sprint("k", i)
		switch p := ring.Partition([]byte(k), 64); {
		case p < 8 && big == "":
			big = k
		case p > 32 && small == "":
			small = k
		}
	}
	n1 := tc.nodes["n1"].cfg.Store
	for _, kv := range [][2]string{{big, strings.Repeat("x", 2000)}, {small, "s"}} {
		var o crdt.Object
		o.Reg = o.Reg.Update(n1.Actor(), o.Reg.Context, []byte(kv[1]), false, 1)
		p := ring.Partition([]byte(kv[0]), 64)
		if _, err := n1.Merge(p, []byte(kv[0]), o); err != nil {
			t.Fatal(err)
		}
		if err := n1.AddHint(p, []byte(kv[0]), "n2"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "n2 to get the hint behind one it cannot take", func() bool { return tc.local(t, "n2", small) == "[s]" })
	if got := n1.Hints()["n2"]; got != 1 {
		t.Errorf("%d hints for n2 pending, want the one its connection breaks on (kept for later passes)", got)
	}
}
