package node

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// TestACopiedDataDirLosesNoIncrements: a data directory copied from a
// cleanly stopped node (a VM image, a restore from another node's backup,
// `cp -r` to seed a new node) keeps its actor id, so two nodes then write
// under one actor. Concurrent increments through the two both take the
// actor's entry from k to k+1 and the per-actor max keeps one: acknowledged
// increments vanish (KV679 again, by another road). Nothing detects it,
// although every node gossips its actor id in its tags: a node should
// refuse to start, or take a new actor id, when another member already
// writes under its actor.
func TestACopiedDataDirLosesNoIncrements(t *testing.T) {
	orig := t.TempDir()
	s, err := store.Open(store.Options{Dir: orig, Partitions: 64, Owner: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // a clean stop: the actor id is kept
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(clone, os.DirFS(orig)); err != nil {
		t.Fatal(err)
	}
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		o.Owner = name
		switch name {
		case "n1":
			o.Dir = orig
		case "n2":
			o.Dir = clone
		}
	})
	a1, a2 := tc.nodes["n1"].cfg.Store.Actor(), tc.nodes["n2"].cfg.Store.Actor()
	if a1 == a2 {
		t.Fatalf("n1 and n2, on a copy of n1's directory, both write under actor %016x", a1)
	}
	const per = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for _, via := range []string{"n1", "n2", "n1", "n2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := tc.nodes[via].Incr(context.Background(), []byte("ctr"), 1); err == nil {
					mu.Lock()
					acked++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	var total int64
	for _, n := range names {
		o, err := tc.nodes[n].Get(context.Background(), []byte("ctr"))
		if err != nil {
			t.Fatal(err)
		}
		total = max(total, o.Cnt.Value())
	}
	if total < int64(acked) {
		t.Fatalf("%d increments acknowledged through n1 and n2 (whose data directory is a copy of n1's, same actor id %v), the counter reads %d: %d acknowledged increments lost",
			acked, a1 == a2, total, int64(acked)-total)
	}
}

// TestARestoredBackupLosesNoWrite: a node restored from an offline backup
// of its own data directory (a clean stop, a copy, later the copy put
// back) kept its actor id, and handed out again the dots and counter
// totals it had given the writes made since the backup: the replicas,
// having seen those, dropped a W=3 write acknowledged after the restore
// as superseded, and an increment's total as below theirs (found in
// review). The restored copy now writes under a new actor id.
func TestARestoredBackupLosesNoWrite(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	d1 := filepath.Join(t.TempDir(), "n1")
	tc := newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 3, 3
		cfg.ReadRepairChance = -1
		o.Owner = name
		if name == "n1" {
			o.Dir = d1
		}
	})
	ctx := context.Background()
	put := func(v string) {
		t.Helper()
		if err := tc.nodes["n1"].Put(ctx, []byte("k"), []byte(v), wire.WriteOptions{}); err != nil {
			t.Fatalf("PUT %s: %v", v, err)
		}
	}
	incr := func() {
		t.Helper()
		if _, err := tc.nodes["n1"].Incr(ctx, []byte("ctr"), 1); err != nil {
			t.Fatal(err)
		}
	}
	// restart stops n1 cleanly and starts it again on d1, after what
	// between does to the directory.
	restart := func(between func()) {
		t.Helper()
		old := tc.nodes["n1"]
		old.Close()
		if err := old.cfg.Store.Close(); err != nil {
			t.Fatal(err)
		}
		between()
		st, err := store.Open(store.Options{Dir: d1, Partitions: 64, Owner: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg := old.cfg
		cfg.Store = st
		c, err := NewCoordinator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.SetMembers(names); err != nil {
			t.Fatal(err)
		}
		tc.nodes["n1"] = c
		tc.net.Register("n1", c.HandlePeer)
	}
	put("v1")
	incr()
	backup := filepath.Join(t.TempDir(), "backup")
	restart(func() {
		if err := os.CopyFS(backup, os.DirFS(d1)); err != nil {
			t.Fatal(err)
		}
	})
	actor := tc.nodes["n1"].cfg.Store.Actor()
	put("v2")
	put("v3")
	incr()
	incr()
	restart(func() { // the directory is lost; the backup is restored
		if err := os.RemoveAll(d1); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(d1, os.DirFS(backup)); err != nil {
			t.Fatal(err)
		}
	})
	put("v4") // acknowledged by all three replicas
	incr()
	for _, n := range names {
		// n1's copy (the backup's) had not seen v3, so v4 supersedes v1
		// only: the two are siblings, neither write lost.
		if got := value(t, tc.nodes[n], "k"); got != "[v3 v4]" {
			t.Errorf("read through %s after a PUT of v4 acknowledged by every replica: %s (copies: n1 %s, n2 %s, n3 %s; actor %016x before the restore, %016x after)",
				n, got, tc.local(t, "n1", "k"), tc.local(t, "n2", "k"), tc.local(t, "n3", "k"), actor, tc.nodes["n1"].cfg.Store.Actor())
		}
		o, err := tc.nodes[n].Get(ctx, []byte("ctr"))
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Cnt.Value(); got != 4 {
			t.Errorf("the counter through %s after 4 acknowledged increments: %d", n, got)
		}
	}
}
