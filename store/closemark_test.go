package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestARestoredCopyGetsANewActor: a backup of a cleanly closed directory,
// restored, looked like the directory the node closed last, and kept its
// actor id: the node then handed out again the dots it had given the
// writes made since the backup, and the other replicas, having seen
// those, dropped the new writes as superseded (found in review: a W=3
// write acknowledged, then gone; TestARestoredBackupLosesNoWrite). A
// restored copy now gets a new actor; the directory itself, reopened or
// moved, keeps its own.
func TestARestoredCopyGetsANewActor(t *testing.T) {
	if id, err := writeCloseMark(vfs.Default, t.TempDir()); err != nil {
		t.Fatal(err)
	} else if id == nil {
		t.Skip("this platform gives files no identity")
	}
	root := t.TempDir()
	dir, backup := filepath.Join(root, "db"), filepath.Join(root, "backup")
	type opened struct {
		actor             uint64
		restored, crashed bool
	}
	open := func(dir string) opened {
		t.Helper()
		s, err := Open(Options{Dir: dir, Partitions: 16, Owner: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return opened{s.Actor(), s.RestoredCopy(), s.ReplacedActor()}
	}
	first := open(dir)
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil { // an offline backup
		t.Fatal(err)
	}
	if got := open(dir); got != first {
		t.Fatalf("reopened: %+v, want %+v", got, first)
	}
	moved := filepath.Join(root, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if got := open(moved); got != first {
		t.Fatalf("moved, then opened: %+v, want %+v", got, first)
	}
	if err := os.RemoveAll(moved); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(backup)); err != nil { // restored
		t.Fatal(err)
	}
	restored := open(dir)
	if restored.actor == first.actor || !restored.restored || restored.crashed {
		t.Fatalf("the restored backup: %+v; want a new actor (was %x), restored, not crashed", restored, first.actor)
	}
	if got := open(dir); got.actor != restored.actor || got.restored {
		t.Fatalf("the restored directory reopened: %+v, want actor %x, not restored again", got, restored.actor)
	}
}
