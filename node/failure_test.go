package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/redis/go-redis/v9"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/store"
)

// TestStoreFailureStopsTheNode: with --sync, a SET whose WAL fsync fails
// gets an error, not +OK; the value it wrote is not served afterwards (a
// GET of it fails rather than answer with a write that may be on no disk);
// and the node reports the failure (Failed), so that the process shuts
// down and is restarted.
func TestStoreFailureStopsTheNode(t *testing.T) {
	var fail atomic.Bool
	n, err := Start(Config{Name: "t", DataDir: "/db", ClientAddr: "127.0.0.1:0", HTTPAddr: "-", Partitions: 64, Sync: true,
		storeFS: errorfs.Wrap(vfs.NewMem(), testutil.WALSyncFails{Fail: &fail})})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c := redis.NewClient(&redis.Options{Addr: n.ClientAddr(), MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Failed():
		t.Fatal("Failed is closed before any failure")
	default:
	}

	fail.Store(true)
	if err := c.Set(ctx, "k", "v2", 0).Err(); err == nil || !strings.Contains(err.Error(), "store: failed") {
		t.Fatalf("a SET whose fsync failed returned %v, want the store's failure", err)
	}
	select {
	case <-n.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the store failed and the node did not report it")
	}
	if !errors.Is(n.StoreErr(), store.ErrFailed) {
		t.Errorf("StoreErr() = %v, want store.ErrFailed", n.StoreErr())
	}
	if v, err := c.Get(ctx, "k").Result(); err == nil {
		t.Errorf("GET after the failure answered %q, want an error (v2 may be on no disk, v1 is stale)", v)
	}
	if err := c.Incr(ctx, "n").Err(); err == nil {
		t.Error("INCR after the failure succeeded")
	}
	_ = n.Close() // must return, not panic (pebble may report the broken WAL)
}
