package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// stale is the context VGET gives for a missing key: a write with it
// supersedes nothing, so each adds a sibling (as writers racing through
// different coordinators, or a client re-sending an old token, do).
var stale = wire.WriteOptions{HasContext: true}

// TestWritesCannotGrowAnObjectPastItsLimits: siblings pile up under stale
// contexts; without a bound a key grew past every message limit (and a
// replica closed the peer connection on its copies, failing other keys'
// writes). A write past max-siblings or max-object-size is refused with
// an error that says what to do, and stores nothing; a write that
// resolves the siblings is taken.
func TestWritesCannotGrowAnObjectPastItsLimits(t *testing.T) {
	n, err := Start(Config{Name: "solo", DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Partitions: 64,
		Server: wire.ServerConfig{MaxValueSize: 24 << 10}, Objects: ObjectLimits{MaxSiblings: 3, MaxSize: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := context.Background()
	siblings := func(key string) int {
		o, err := n.Get(ctx, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return len(o.Reg.Siblings)
	}

	for i := range 3 {
		if err := n.Put(ctx, []byte("k"), []byte(fmt.Sprint("v", i)), stale); err != nil {
			t.Fatalf("sibling %d of 3: %v", i+1, err)
		}
	}
	err = n.Put(ctx, []byte("k"), []byte("v3"), stale)
	var tooLarge *ObjectTooLargeError
	if !errors.As(err, &tooLarge) || !errors.Is(err, wire.ErrObjectTooLarge) || !strings.Contains(err.Error(), "4 siblings, over max-siblings 3") ||
		!strings.Contains(err.Error(), "PUT key value CTX token") {
		t.Fatalf("a fourth sibling with max-siblings 3: %v", err)
	}
	if got := siblings("k"); got != 3 {
		t.Fatalf("after the refused write: %d siblings, want 3 (nothing stored)", got)
	}
	// Over RESP and HTTP, the refusal is as clear.
	c := client(t, n)
	if err := c.Do(ctx, "PUT", "k", "v4", "CTX", stale.Context.Token()).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR object too large: the write would make 4 siblings") {
		t.Errorf("RESP: %v", err)
	}
	req, _ := http.NewRequest("PUT", "http://"+n.HTTPAddr()+"/kv/k", strings.NewReader(`"v5"`))
	req.Header.Set(wire.ContextHeader, stale.Context.Token())
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("HTTP PUT past max-siblings: %v %v, want 413", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	// A write with the siblings' context resolves them, and is taken.
	o, err := n.Get(ctx, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Put(ctx, []byte("k"), []byte("resolved"), wire.WriteOptions{Context: o.Reg.Context, HasContext: true}); err != nil || siblings("k") != 1 {
		t.Fatalf("the resolving write: %v, %d siblings", err, siblings("k"))
	}

	// Size: two siblings of 24 KiB fit in 64 KiB, a third does not.
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, 24<<10) }
	for i := range 2 {
		if err := n.Put(ctx, []byte("big"), big(byte('a'+i)), stale); err != nil {
			t.Fatalf("value %d: %v", i+1, err)
		}
	}
	err = n.Put(ctx, []byte("big"), big('c'), stale)
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "over max-object-size 65536") {
		t.Fatalf("a third 24 KiB sibling with max-object-size 64 KiB: %v", err)
	}
	if got := siblings("big"); got != 2 {
		t.Fatalf("after the refused write: %d siblings, want 2", got)
	}
	// A write without a context supersedes what the node holds: taken.
	if err := n.Put(ctx, []byte("big"), big('d'), wire.WriteOptions{}); err != nil || siblings("big") != 1 {
		t.Fatalf("a blind write over two siblings: %v, %d siblings", err, siblings("big"))
	}
}

// TestObjectLimitsCheck: a write is refused only if it passes a bound and
// grows the object in what it passes, so that a write that shrinks an
// object already over (concurrent copies merged past the bound) is taken.
func TestObjectLimitsCheck(t *testing.T) {
	reg := func(n, size int) crdt.Object {
		var o crdt.Object
		for i := range n {
			o.Reg = o.Reg.Update(uint64(i+1), crdt.Context{}, bytes.Repeat([]byte{'x'}, size), false, 1)
		}
		return o
	}
	lim := ObjectLimits{MaxSiblings: 3, MaxSize: 1000}
	for _, tt := range []struct {
		cur, next crdt.Object
		refused   bool
	}{
		{reg(2, 10), reg(3, 10), false},
		{reg(3, 10), reg(4, 10), true},
		{reg(5, 10), reg(4, 10), false}, // over, but fewer than before
		{reg(5, 10), reg(6, 10), true},
		{reg(1, 10), reg(2, 600), true}, // 1,200 bytes
		{reg(2, 600), reg(1, 900), false},
		{reg(2, 600), reg(2, 700), true},
		{reg(2, 10), reg(4, 10), true},
	} {
		err := lim.check(tt.cur, tt.next)
		if (err != nil) != tt.refused {
			t.Errorf("%d siblings (%d bytes) to %d (%d bytes): %v, want refused %v", len(tt.cur.Reg.Siblings), tt.cur.EncodedLen(),
				len(tt.next.Reg.Siblings), tt.next.EncodedLen(), err, tt.refused)
		}
	}
	if err := (ObjectLimits{}).check(reg(1, 10), reg(200, 10)); err != nil {
		t.Errorf("no bounds: %v", err)
	}
	// A bound that a value of the largest size cannot fit under, with its
	// dot, time and context, is refused: equal to the value bound too,
	// and against the default value bound when none is given.
	for _, tt := range []struct{ value, object int }{{4096, 1000}, {4096, 4096}, {0, 4 << 20}} {
		cfg := Config{DataDir: "x", Server: wire.ServerConfig{MaxValueSize: tt.value}, Objects: ObjectLimits{MaxSize: tt.object}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "leaves no room for a value of max value size") {
			t.Errorf("max value size %d, max object size %d: %v", tt.value, tt.object, err)
		}
	}
	if err := (Config{DataDir: "x", Server: wire.ServerConfig{MaxValueSize: 4096}, Objects: ObjectLimits{MaxSize: 4096 + objectOverhead}}).Validate(); err != nil {
		t.Errorf("room for one value: %v", err)
	}
	// A value of the largest size fits under the smallest bound allowed.
	var one crdt.Object
	ctx := crdt.Context{}
	for a := range 8 { // a context of several actors
		var o crdt.Object
		o.Reg = o.Reg.Update(uint64(a+1)<<40, ctx, nil, false, 1)
		ctx = o.Reg.Context
		one.Reg.Context = ctx
	}
	one.Reg = one.Reg.Update(1<<62, one.Reg.Context, bytes.Repeat([]byte{'x'}, 4096), false, 1<<62)
	if one.EncodedLen() > 4096+objectOverhead {
		t.Errorf("a 4096-byte value with %d context entries encodes to %d bytes: over the overhead allowed", len(one.Reg.Context), one.EncodedLen())
	}
}

// TestObjectLimitsInACluster: through a coordinator, local or forwarded,
// a write past the bounds is refused with the same error, and no copy of
// it is made; merges of copies are never refused.
func TestObjectLimitsInACluster(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		cfg.Objects = ObjectLimits{MaxSiblings: 2}
	})
	ctx := context.Background()
	key := tc.keyOutside(t, "n4") // n4 forwards
	for _, via := range []string{"n1", "n4"} {
		k := []byte(key + via)
		outside := !slices.Contains(tc.replicasOf(string(k)), "n4")
		for i := range 2 {
			if err := tc.nodes[via].Put(ctx, k, []byte(fmt.Sprint("v", i)), stale); err != nil {
				t.Fatalf("via %s: %v", via, err)
			}
		}
		err := tc.nodes[via].Put(ctx, k, []byte("v2"), stale)
		if !errors.Is(err, wire.ErrObjectTooLarge) || !strings.Contains(err.Error(), "object too large: the write would make 3 siblings, over max-siblings 2") {
			t.Errorf("via %s (forwarded: %v): %v", via, via == "n4" && outside, err)
		}
		for _, r := range tc.replicasOf(string(k)) {
			if got := len(tc.object(t, r, string(k)).Reg.Siblings); got > 2 {
				t.Errorf("via %s: replica %s holds %d siblings", via, r, got)
			}
		}
	}
	// Copies merged from elsewhere are taken whatever their size: a
	// replica that refused one would lose an acknowledged write.
	var o crdt.Object
	for i := range 5 {
		o.Reg = o.Reg.Update(uint64(100+i), crdt.Context{}, []byte("x"), false, 1)
	}
	if _, err := tc.nodes["n1"].HandlePeer(ctx, "merge", [][]byte{[]byte("merged"), o.Encode()}); err != nil {
		t.Fatalf("a merge of 5 siblings with max-siblings 2: %v", err)
	}
}

// TestAHintTheTargetRefusesDoesNotHoldUpTheOthers: n1 holds hints for n2.
// n2 refuses the first in delivery order (answers its merge with an error,
// as it did for a copy larger than it accepted); the hints after it must
// still be delivered, and the refused one kept. Delivery used to stop at
// the first failure and start there again every pass, for ever.
func TestAHintTheTargetRefusesDoesNotHoldUpTheOthers(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		cfg.Handoff.Interval, cfg.Handoff.Rate = 10*time.Millisecond, 2 // two hints a pass: the passes must go round
	})
	n1 := tc.nodes["n1"]
	type hk struct {
		part uint32
		key  string
	}
	var keys []hk
	for i := range 8 {
		k := fmt.Sprint("r", i)
		keys = append(keys, hk{ring.Partition([]byte(k), 64), k})
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].part < keys[j].part || keys[i].part == keys[j].part && keys[i].key < keys[j].key
	})
	refused := keys[0].key
	n2 := tc.nodes["n2"]
	tc.net.Register("n2", func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		if method == "merge" && string(args[0]) == refused {
			return nil, errors.New("refused for the test")
		}
		return n2.HandlePeer(ctx, method, args)
	})
	var o crdt.Object
	o.Reg = o.Reg.Update(n1.cfg.Store.Actor(), o.Reg.Context, []byte("v"), false, 1)
	for _, k := range keys {
		if _, err := n1.cfg.Store.MergeHinted(k.part, []byte(k.key), o, "n2"); err != nil {
			t.Fatal(err)
		}
	}
	n1.kickHandoff()
	delivered := func() bool {
		for _, k := range keys[1:] {
			if got, found, _ := n2.cfg.Store.Get(k.part, []byte(k.key)); !found || !got.Reg.Live() {
				return false
			}
		}
		return true
	}
	testutil.Eventually(t, 10*time.Second, "the hints for n2 behind one it refuses to be delivered", delivered)
	if got := n1.cfg.Store.Hints()["n2"]; got != 1 {
		t.Errorf("%d hints for n2 pending, want the one it refuses", got)
	}
}

// TestCopiesLargerThanAClientArgumentReplicate: a replica reads its peers
// with limits of its own, not the clients' (an object with siblings is
// larger than any one value). It read them with the clients' max-bulk: an
// object past it was a protocol error that closed the peer connection,
// failing the writes of every key on it with quorum errors, with every
// node up.
func TestCopiesLargerThanAClientArgumentReplicate(t *testing.T) {
	if l := peerLimits(wire.Limits{MaxBulk: 64 << 10}, 16<<20); l.MaxBulk < 64<<20 || l.MaxRequest < 64<<20 {
		t.Errorf("peer limits %+v: want room for four 16 MiB objects", l)
	}
	if l := peerLimits(wire.Limits{}, -1); l.MaxBulk != 1<<30 || l.MaxRequest != 1<<30 {
		t.Errorf("peer limits with no bound on objects %+v: want copies of up to a GiB", l)
	}
	nodes := startClusterNodesWith(t, 3, func(c *Config) {
		c.Cluster.Timeout = time.Second
		c.Server = wire.ServerConfig{Limits: wire.Limits{MaxBulk: 64 << 10}, MaxValueSize: 24 << 10}
	})
	ctx := context.Background()
	for i := range 4 { // 4 x 24 KiB: 96 KiB, over the clients' 64 KiB max-bulk
		if err := nodes[0].Put(ctx, []byte("grown"), bytes.Repeat([]byte{byte('a' + i)}, 24<<10), stale); err != nil {
			t.Fatalf("write %d: %v", i+1, err)
		}
	}
	for _, n := range nodes {
		testutil.Eventually(t, 5*time.Second, n.cfg.Name+" to hold the 4 siblings", func() bool {
			o, _, err := n.st.Get(n.partition([]byte("grown")), []byte("grown"))
			return err == nil && len(o.Reg.Siblings) == 4
		})
	}
}
