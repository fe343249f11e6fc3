package store

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rumor-kv/rumor/crdt"
)

// TestYieldingFSYieldsOnlyInFlushesAndCompactions: the files of flushes
// and compactions yield once per yieldEvery bytes written, whatever the
// size of each write; other files (the write-ahead log, the manifest) are
// the file system's own.
func TestYieldingFSYieldsOnlyInFlushesAndCompactions(t *testing.T) {
	yields := 0
	fs := yieldingFS{FS: vfs.NewMem(), yield: func() { yields++ }}
	for _, cat := range []vfs.DiskWriteCategory{"pebble-memtable-flush", "pebble-compaction"} {
		f, err := fs.Create(string(cat), cat)
		if err != nil {
			t.Fatal(err)
		}
		yields = 0
		chunk := make([]byte, 4096)
		for range 3 * yieldEvery / len(chunk) {
			if _, err := f.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if yields != 3 {
			t.Errorf("%s: %d yields for %d bytes in 4 KB writes, want 3", cat, yields, 3*yieldEvery)
		}
		yields = 0
		if _, err := f.Write(make([]byte, 2*yieldEvery+1)); err != nil || yields != 1 {
			t.Errorf("%s: one write of two yields' worth: %d yields (%v), want 1", cat, yields, err)
		}
		f.Close()
	}
	for _, cat := range []vfs.DiskWriteCategory{"pebble-wal", vfs.WriteCategoryUnspecified} {
		f, err := fs.Create(string(cat), cat)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.(*yieldingFile); ok {
			t.Errorf("a file of category %q yields", cat)
		}
		f.Close()
	}
}

// categoriesFS records the write categories of the files pebble creates.
type categoriesFS struct {
	vfs.FS
	mu   sync.Mutex
	seen []vfs.DiskWriteCategory
}

func (fs *categoriesFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	fs.seen = append(fs.seen, cat)
	fs.mu.Unlock()
	return fs.FS.Create(name, cat)
}

// TestPebbleFlushesUnderAYieldingCategory: pebble names its flushes'
// files with a category yieldingFS knows, so a pebble that renamed it
// would fail here rather than silently stop yielding.
func TestPebbleFlushesUnderAYieldingCategory(t *testing.T) {
	fs := &categoriesFS{FS: vfs.NewMem()}
	s := open(t, Options{Dir: "/db", Partitions: 16, FS: fs})
	for i := range 100 {
		if _, err := s.Update(0, fmt.Appendf(nil, "k%d", i), func(crdt.Object, bool) (crdt.Object, error) {
			return crdt.Object{Reg: crdt.Register{}.Update(1, nil, []byte("v"), false, 1)}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !slices.ContainsFunc(fs.seen, func(c vfs.DiskWriteCategory) bool { return yieldsOn[c] }) {
		t.Fatalf("a flush created files of categories %q, none of which yields", fs.seen)
	}
}
