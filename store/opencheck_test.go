package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fillAndClose writes n keys to a store in dir, closes it (which flushes
// them to tables) and returns the names of the tables it left.
func fillAndClose(t *testing.T, dir string, n int) []string {
	t.Helper()
	s, err := Open(Options{Dir: dir, Partitions: 16, MemTableSize: 1 << 20}) // flushes, and logs reused
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		set(t, s, uint32(i%16), fmt.Sprintf("key-%06d", i), val)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table after a clean close: Close did not flush")
	}
	return tables
}

func checkAll(t *testing.T, dir string, n int) {
	t.Helper()
	s := open(t, Options{Dir: dir})
	for i := range n {
		if v := value(t, s, uint32(i%16), fmt.Sprintf("key-%06d", i)); v != val {
			t.Fatalf("key-%06d = %s after reopening", i, v)
		}
	}
}

// val is every key's value: 100 bytes, so that 20,000 keys take a few
// memtables of 1 MiB, and pebble reuses its logs.
var val = strings.Repeat("v", 100)

func stillThere(t *testing.T, files []string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v (pebble deleted a table of a directory it was refused)", filepath.Base(f), err)
		}
	}
}

// TestAMissingManifestMarkerIsRefused: a directory whose manifest marker
// was lost (a copy that skipped empty files) opened as a new, empty
// database and pebble deleted its tables; now it is refused, the tables
// stay, and with the marker back every key is there.
func TestAMissingManifestMarkerIsRefused(t *testing.T) {
	dir := t.TempDir()
	const n = 2000
	tables := fillAndClose(t, dir, n)
	markers, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if len(markers) != 1 {
		t.Fatalf("markers %v, want one", markers)
	}
	aside := filepath.Join(t.TempDir(), "marker")
	if err := os.Rename(markers[0], aside); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir, Partitions: 16})
	if err == nil || !strings.Contains(err.Error(), "no manifest marker") {
		t.Fatalf("Open without the marker: %v, want the missing marker named", err)
	}
	stillThere(t, tables)
	if err := os.Rename(aside, markers[0]); err != nil {
		t.Fatal(err)
	}
	checkAll(t, dir, n)
}

// TestATruncatedManifestLosesNothingSilently: pebble reads a MANIFEST up
// to its first bad record, so one cut short opened without the tables it
// listed after the cut, and pebble deleted them as obsolete: the node
// started without a word, thousands of acknowledged keys gone. Now the
// store either finds every key (pebble replayed them from its logs) or,
// its identity gone with the tables, refuses the directory and leaves the
// tables on disk.
func TestATruncatedManifestLosesNothingSilently(t *testing.T) {
	dir := t.TempDir()
	const n = 20000
	tables := fillAndClose(t, dir, n)
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST")
	}
	for _, m := range manifests {
		if err := os.Truncate(m, 100); err != nil {
			t.Fatal(err)
		}
	}
	for attempt := range 2 { // and again on a second try
		s, err := Open(Options{Dir: dir, Partitions: 16})
		if err == nil {
			missing := 0
			for i := range n {
				if _, ok, _ := s.Get(uint32(i%16), fmt.Appendf(nil, "key-%06d", i)); !ok {
					missing++
				}
			}
			s.Close()
			if missing > 0 {
				t.Fatalf("attempt %d: opened with a truncated MANIFEST, %d of %d keys missing", attempt+1, missing, n)
			}
			return // pebble found them all in its logs
		}
		if !strings.Contains(err.Error(), "MANIFEST is damaged") {
			t.Fatalf("attempt %d: Open: %v, want the damaged MANIFEST named", attempt+1, err)
		}
		stillThere(t, tables)
	}
}

// TestACleanCloseDoesNotNeedTheLog: Close flushes, so a cleanly closed
// directory whose newest write-ahead log is damaged loses nothing (pebble
// took the damage for a torn tail and dropped every write after it), and
// keeps its actor (the clean mark was one of the dropped writes).
func TestACleanCloseDoesNotNeedTheLog(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	fillAndClose(t, dir, n)
	s := open(t, Options{Dir: dir})
	actor := s.Actor()
	s.Close()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() > 64 {
			f.WriteAt([]byte(strings.Repeat("\xff", 16)), st.Size()/2)
		}
		f.Close()
	}
	s = open(t, Options{Dir: dir})
	if s.Actor() != actor || s.ReplacedActor() {
		t.Errorf("actor %x (replaced %v) after a clean close, want %x kept", s.Actor(), s.ReplacedActor(), actor)
	}
	s.Close()
	checkAll(t, dir, n)
}

// TestACorruptTableFailsTheStore: a table that fails its checksum made
// pebble panic (its default) on every start, from the key filter's scan
// of every block. Now the store fails, naming the file.
func TestACorruptTableFailsTheStore(t *testing.T) {
	dir := t.TempDir()
	tables := fillAndClose(t, dir, 20000)
	f, err := os.OpenFile(tables[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if _, err := f.WriteAt([]byte(strings.Repeat("\x5a", 64)), st.Size()/3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	failed := make(chan error, 1)
	s, err := Open(Options{Dir: dir, Partitions: 16, OnFailure: func(err error) {
		select {
		case failed <- err:
		default:
		}
	}})
	if err != nil {
		// Refused at once is as good, if it names the table.
		if !strings.Contains(err.Error(), filepath.Base(tables[0])) {
			t.Fatalf("Open: %v, want the corrupt table named", err)
		}
		return
	}
	defer s.Close()
	// The key filter's scan reads every block; a read of every key would too.
	for i := 0; i < 20000; i++ {
		s.Get(uint32(i%16), fmt.Appendf(nil, "key-%06d", i))
	}
	select {
	case err := <-failed:
		if !errors.Is(err, ErrFailed) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
			t.Fatalf("failure %v, want ErrFailed naming %s", err, filepath.Base(tables[0]))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not fail on a corrupt table")
	}
}

// crashAtMarkerFS fails the creation of the manifest marker: the disk as a
// crash during a node's first start, between pebble's MANIFEST and its
// marker, leaves it.
type crashAtMarkerFS struct{ vfs.FS }

func (f crashAtMarkerFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasPrefix(filepath.Base(name), "marker.manifest") {
		return nil, errors.New("simulated crash")
	}
	return f.FS.Create(name, c)
}

// TestACrashDuringTheFirstStartIsNotDamage: a MANIFEST without its marker
// and nothing else (no write was ever acknowledged there) opens as a new
// directory; the marker check refused it for good (a review's finding on
// its first version).
func TestACrashDuringTheFirstStartIsNotDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	func() {
		defer func() { recover() }() // pebble's Fatalf at the failed marker: the process would die here
		if s, err := Open(Options{Dir: dir, Partitions: 16, FS: crashAtMarkerFS{vfs.Default}}); err == nil {
			s.Close()
			t.Fatal("the first start did not fail at the marker")
		}
	}()
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		t.Fatal("the simulated crash left no MANIFEST: the test proves nothing")
	}
	s, err := Open(Options{Dir: dir, Partitions: 16})
	if err != nil {
		t.Fatalf("the second start, after a crash in the first: %v", err)
	}
	set(t, s, 1, "k", val)
	s.Close()
	checkAll(t, dir, 0)
}
