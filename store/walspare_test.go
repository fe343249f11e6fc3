package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// spareValue is the value key i is written with: long enough that the
// logs fill and pebble creates several.
func spareValue(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("v%07d.", i)), 24)
}

func spareKey(i int) []byte { return []byte(fmt.Sprintf("k%07d", i)) }

// writeUntilSparesUsed writes keys from *next on, in groups of 200 whose
// last write is synced (which syncs the group), until pebble has created
// want logs from spares (waiting for each spare to be ready, so that the
// test does not depend on how fast one is written). (Once pebble has
// obsolete logs it recycles them instead of creating new ones.)
func writeUntilSparesUsed(t *testing.T, db *pebble.DB, sp *spareFS, next *int, want uint64) {
	t.Helper()
	for sp.used.Load() < want {
		if *next > 200_000 {
			t.Fatalf("%d writes and only %d logs made from spares (%d without)", *next, sp.used.Load(), sp.missed.Load())
		}
		sp.mu.Lock()
		ready := sp.ready > 0
		sp.mu.Unlock()
		if !ready {
			testutil.Eventually(t, 10*time.Second, "a spare log is ready", func() bool {
				sp.mu.Lock()
				defer sp.mu.Unlock()
				return sp.ready > 0 || !sp.running
			})
		}
		for i := range 200 {
			wo := pebble.NoSync
			if i == 199 {
				wo = pebble.Sync
			}
			if err := db.Set(spareKey(*next), spareValue(*next), wo); err != nil {
				t.Fatal(err)
			}
			*next++
		}
	}
}

// TestSpareLogsLoseNoSyncedWriteInACrash: pebble writing its logs over
// zero-filled spares, then a crash that keeps only what was synced (and,
// in a second clone, a random part of what was not): every synced write is
// there after recovery, and recovery reads the zeros after the last record
// as the log's end.
func TestSpareLogsLoseNoSyncedWriteInACrash(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	fs := vfs.NewCrashableMem()
	const dir = "db"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sp := newSpareFS(fs, dir, 1<<20)
	db, err := pebble.Open(dir, &pebble.Options{FS: sp, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	writeUntilSparesUsed(t, db, sp, &next, 2)
	synced := next
	// Writes that were never synced may or may not survive; none may
	// damage what was.
	for i := synced; i < synced+500; i++ {
		if err := db.Set(spareKey(i), spareValue(i), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	crashes := map[string]*vfs.MemFS{
		"synced only":       fs.CrashClone(vfs.CrashCloneCfg{}),
		"half the unsynced": fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), 1))}),
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	sp.close()
	t.Logf("%d synced writes; %d logs from spares, %d from empty", synced, sp.used.Load(), sp.missed.Load())
	for name, crashed := range crashes {
		t.Run(name, func(t *testing.T) {
			logs, _ := crashed.List(dir)
			slices.Sort(logs)
			var last string
			for _, name := range logs {
				if strings.HasSuffix(name, ".log") {
					last = name
				}
			}
			// The log being written at the crash was made from a spare:
			// zeros follow its last record.
			if fi, err := crashed.Stat(crashed.PathJoin(dir, last)); err != nil || fi.Size() < spareMinSize {
				t.Fatalf("the newest log %q: %v, %v; want one made from a spare (%d bytes or more)", last, fi, err, spareMinSize)
			}
			db, err := pebble.Open(dir, &pebble.Options{FS: crashed, MemTableSize: 1 << 20})
			if err != nil {
				t.Fatalf("recovery over %v: %v", logs, err)
			}
			defer db.Close()
			for i := range synced {
				v, closer, err := db.Get(spareKey(i))
				if err != nil {
					t.Fatalf("synced write %d of %d: %v", i, synced, err)
				}
				if !bytes.Equal(v, spareValue(i)) {
					t.Fatalf("synced write %d: %q", i, v)
				}
				closer.Close()
			}
		})
	}
}

// TestStoreOnDiskWritesLogsOverSpares: a store on the disk makes its
// logs from spares, its writes are all there after a reopen, and Close
// leaves no spare behind; a stale spare found at Open (here full of
// garbage) is removed, never made a log.
func TestStoreOnDiskWritesLogsOverSpares(t *testing.T) {
	dir := t.TempDir()
	garbage := bytes.Repeat([]byte{0xa5}, 64<<10)
	if err := os.WriteFile(filepath.Join(dir, spareName), garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Partitions: 16, Sync: true, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if s.spares == nil {
		t.Fatal("a store on the disk has no spare logs")
	}
	if b, err := os.ReadFile(filepath.Join(dir, spareName)); err == nil && bytes.Contains(b, []byte{0xa5}) {
		t.Fatal("the stale spare was kept")
	}
	n := 0
	for s.spares.used.Load() < 2 {
		if n > 100_000 {
			t.Fatalf("%d writes and only %d logs made from spares", n, s.spares.used.Load())
		}
		testutil.Eventually(t, 10*time.Second, "a spare log is ready", func() bool {
			s.spares.mu.Lock()
			defer s.spares.mu.Unlock()
			return s.spares.ready > 0 || !s.spares.running
		})
		for range 200 {
			set(t, s, uint32(n%16), string(spareKey(n)), string(spareValue(n)))
			n++
		}
	}
	var created map[string]float64
	for _, mf := range gather(t, s) {
		if mf.GetName() == "rumor_store_wal_logs_created_total" {
			created = map[string]float64{}
			for _, m := range mf.GetMetric() {
				created[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if created["spare"] < 2 || created["empty"] != 0 {
		t.Errorf("rumor_store_wal_logs_created_total = %v, want >= 2 from spares (the first too) and none empty", created)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close, the spare: %v, want it removed", err)
	}
	r := open(t, Options{Dir: dir, Sync: true, MemTableSize: 1 << 20})
	for i := range n {
		if got := value(t, r, uint32(i%16), string(spareKey(i))); got != string(spareValue(i)) {
			t.Fatalf("after reopen, key %d: %q", i, got)
		}
	}
}

// failingSpareFS refuses to create the spare, as a full disk would.
type failingSpareFS struct{ vfs.FS }

func (fs failingSpareFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if filepath.Base(name) == spareName {
		return nil, errors.New("no space left on device")
	}
	return fs.FS.Create(name, cat)
}

// TestLogsWithoutASpareWhenNoneCanBeWritten: when no spare can be written,
// pebble's logs are created empty as before, and writes go on.
func TestLogsWithoutASpareWhenNoneCanBeWritten(t *testing.T) {
	fs := vfs.NewMem()
	const dir = "db"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sp := newSpareFS(failingSpareFS{fs}, dir, 1<<20)
	defer sp.close()
	db, err := pebble.Open(dir, &pebble.Options{FS: sp, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; sp.missed.Load() < 3; i++ {
		if i > 100_000 {
			t.Fatalf("%d writes made only %d logs", i, sp.missed.Load())
		}
		if err := db.Set(spareKey(i), spareValue(i), pebble.Sync); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if u := sp.used.Load(); u != 0 {
		t.Errorf("%d logs made from spares that could not be written", u)
	}
}

// TestSecondOpenLeavesTheSpareAlone: a second Open of a data directory in
// use is refused before it touches anything there; in particular it does
// not remove or rewrite the running store's spare log, which that store
// may be renaming into a log at the same moment (a rewrite would then zero
// synced records).
func TestSecondOpenLeavesTheSpareAlone(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, Sync: true, MemTableSize: 1 << 20})
	spareReady := func() bool {
		s.spares.mu.Lock()
		defer s.spares.mu.Unlock()
		return s.spares.ready > 0
	}
	testutil.Eventually(t, 10*time.Second, "the next spare is ready", spareReady)
	path := filepath.Join(dir, spareName)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Partitions: 16, Sync: true}); err == nil {
		t.Fatal("a second Open of a directory in use succeeded")
	}
	after, err := os.Stat(path)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || !spareReady() {
		t.Fatalf("the refused Open touched the running store's spare: %v, same file %v", err, err == nil && os.SameFile(before, after))
	}
	used := s.spares.used.Load()
	for i := 0; s.spares.used.Load() == used; i++ {
		if i > 100_000 {
			t.Fatal("the spare was never used")
		}
		set(t, s, uint32(i%16), string(spareKey(i)), string(spareValue(i)))
	}
}
