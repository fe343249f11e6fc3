package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/redis/go-redis/v9"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
)

// TestPipelinedWritesAreDurableBeforeTheirReplies: with Sync, the writes
// of a pipeline share one fsync, and none of their replies leaves before
// it. Clients send go-redis pipelines of SETs and INCRs to a node whose
// store is on pebble's crashable in-memory filesystem; the filesystem is
// crashed mid-stream (keeping a random share of what was not fsynced) and
// the store reopened from it must hold every write a client saw
// acknowledged.
func TestPipelinedWritesAreDurableBeforeTheirReplies(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := 0; round < 3; round++ {
		fs := vfs.NewCrashableMem()
		// A disk whose fsync takes two milliseconds: a reply sent before its
		// write's fsync would be seen by the client well before the crash.
		disk := errorfs.Wrap(fs, slowSync{2 * time.Millisecond})
		n, err := Start(Config{Name: "t", DataDir: "/db", ClientAddr: "127.0.0.1:0", HTTPAddr: "-", Partitions: 64, Sync: true, storeFS: disk})
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(&redis.Options{Addr: n.ClientAddr(), PoolSize: 4, MaxRetries: -1})

		// The worker whose acknowledgements reach 200 crashes the disk at
		// once, while it holds mu: the crash lands right after a reply,
		// inside the fsync that reply must have waited for.
		var mu sync.Mutex
		sets := map[string]int{}   // key: the last value acknowledged
		counts := map[string]int{} // counter: the last value INCR returned
		var crashed *vfs.MemFS
		var wantSets, wantCounts map[string]int
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for i := 1; ; i++ {
					pipe := c.Pipeline()
					for j := 0; j < 8; j++ {
						pipe.Set(ctx, fmt.Sprintf("w%d-k%d", w, (i*8+j)%64), i, 0)
					}
					incr := pipe.Incr(ctx, fmt.Sprintf("w%d-count", w))
					// The last command of a pipeline is not deferred: a
					// read there leaves every write's fsync to the server.
					pipe.Ping(ctx)
					cmds, err := pipe.Exec(ctx)
					if err != nil {
						t.Errorf("pipeline: %v", err)
						return
					}
					mu.Lock()
					if crashed != nil {
						mu.Unlock()
						return
					}
					for _, cmd := range cmds[:8] {
						sets[cmd.Args()[1].(string)] = i
					}
					counts[fmt.Sprintf("w%d-count", w)] = int(incr.Val())
					if len(sets) >= 200 {
						crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rand.New(rand.NewPCG(rng.Uint64(), 0))})
						wantSets, wantCounts = sets, counts
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		c.Close()
		n.Close()

		st, err := store.Open(store.Options{Dir: "/db", Partitions: 64, Sync: true, FS: crashed})
		if err != nil {
			t.Fatalf("round %d: reopen after the crash: %v", round, err)
		}
		lost := 0
		for k, i := range wantSets {
			o, _, err := st.Get(ring.Partition([]byte(k), 64), []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			var got int
			if v, ok := o.Reg.Newest(); ok {
				got, _ = strconv.Atoi(string(v.Value))
			}
			if got < i {
				lost++
				t.Errorf("round %d: %s acknowledged at %d, recovered %d", round, k, i, got)
			}
		}
		for k, v := range wantCounts {
			o, _, err := st.Get(ring.Partition([]byte(k), 64), []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Cnt.Value(); got < int64(v) {
				lost++
				t.Errorf("round %d: INCR %s returned %d, recovered %d", round, k, v, got)
			}
		}
		st.Close()
		if lost > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes lost", round, lost, len(wantSets)+len(wantCounts))
		}
		t.Logf("round %d: %d keys and %d counters acknowledged before the crash, all recovered", round, len(wantSets), len(wantCounts))
	}
}
