package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/rumor-kv/rumor/wire"
)

// BenchmarkCoordinator measures the coordinator's own cost of a quorum
// write and read (N=3, R=2, W=2) in one process over MemNetwork: the
// three stores' work, the coordinator's planning, goroutines, timers and
// allocations, without sockets. It is the quick, deterministic way to see
// what a change to the request path costs (allocs/op especially), before
// make bench-cluster measures it end to end.
func BenchmarkCoordinator(b *testing.B) {
	tc := newTestCluster(b, []string{"n1", "n2", "n3"}, 3, 2, 2)
	c := tc.nodes["n1"]
	ctx := context.Background()
	keys := make([][]byte, 4096)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
	}
	value := []byte("VXK")
	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := c.Put(ctx, keys[i%len(keys)], value, wire.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := c.Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("incr", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := c.Incr(ctx, []byte(fmt.Sprint("ctr:", i%64)), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
