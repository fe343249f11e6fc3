package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestAPipelinedSetThenGetRepairsNothing: a client pipelining SET k and
// GET k (redis-py's pipelines, a cache refill) made every GET find a
// replica without the SET's copy, which left from a goroutine after the
// pipeline had moved on, and repair it: 100 read repairs for 100 pairs,
// with every replica healthy. The copies now leave before the next
// command runs, ahead of the GET's calls on the same connections.
func TestAPipelinedSetThenGetRepairsNothing(t *testing.T) {
	nodes := startClusterNodes(t, 3, false)
	c := redis.NewClient(&redis.Options{Addr: nodes[0].ClientAddr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	for i := range 100 {
		k := fmt.Sprint("k", i)
		var get *redis.StringCmd
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, k, "v", 0)
			get = p.Get(ctx, k)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if v, err := get.Result(); err != nil || v != "v" {
			t.Fatalf("GET %s after SET in one pipeline: %q, %v", k, v, err)
		}
	}
	repairs := uint64(0)
	for _, n := range nodes {
		repairs += n.cluster.coord.Stats().ReadRepairs
	}
	if repairs != 0 {
		t.Errorf("100 pipelines of SET k, GET k with every replica healthy made %d read repairs, want 0", repairs)
	}
}
