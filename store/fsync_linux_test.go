package store

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func newTestSyncer(t *testing.T) *aioSyncer {
	t.Helper()
	a := newAIOSyncer()
	if a == nil {
		t.Skip("this kernel has no AIO (io_setup failed): syncs are plain system calls")
	}
	return a
}

func (a *aioSyncer) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiters)
}

// TestAIOSyncTakesFilesAndDirectories: the kernel takes an fsync and an
// fdatasync of a file and an fsync of a directory (pebble syncs the
// directory after creating a file), and each waiter gets its own answer.
func TestAIOSyncTakesFilesAndDirectories(t *testing.T) {
	a := newTestSyncer(t)
	defer a.close()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("x"), 4096)); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name string
		fd   uintptr
		data bool
	}{{"fdatasync file", f.Fd(), true}, {"fsync file", f.Fd(), false}, {"fsync directory", d.Fd(), false}} {
		err, done := a.sync(tc.fd, tc.data)
		if !done || err != nil {
			t.Errorf("%s: done %v, err %v; want the kernel to take and complete it", tc.name, done, err)
		}
	}
	if n := a.pending(); n != 0 {
		t.Errorf("%d waiters left behind", n)
	}
}

// TestAIOSyncFallsBackWhenTheKernelRefuses: a descriptor the kernel cannot
// fsync through AIO (a pipe has no fsync; a closed descriptor is no file)
// is refused at submission, and the caller is told to use the system
// call, which then reports the error itself. Nothing is left waiting.
func TestAIOSyncFallsBackWhenTheKernelRefuses(t *testing.T) {
	a := newTestSyncer(t)
	defer a.close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err, done := a.sync(w.Fd(), false); done {
		t.Errorf("fsync of a pipe: done with %v, want refused (the pipe has no fsync)", err)
	}
	if err, done := a.sync(^uintptr(0)>>33, true); done {
		t.Errorf("fdatasync of a descriptor that is not open: done with %v, want refused", err)
	}
	if n := a.pending(); n != 0 {
		t.Errorf("%d waiters left behind by refused syncs", n)
	}
}

// TestAIOSyncManyAtOnce: more syncs at once than the queue length asked
// of io_setup. Whatever the kernel refuses (EAGAIN when its queue is
// full) falls back; every caller returns without error, none is lost,
// none is left waiting.
func TestAIOSyncManyAtOnce(t *testing.T) {
	a := newTestSyncer(t)
	defer a.close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := f.Fd()
	const n = 3 * aioQueueLength
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for i := range n {
		wg.Go(func() {
			err, done := a.sync(fd, i%2 == 0)
			if !done {
				err = f.Sync()
			}
			if err != nil {
				t.Errorf("sync %d: %v", i, err)
			}
			if done {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken == 0 {
		t.Error("the kernel took none of the syncs")
	}
	if p := a.pending(); p != 0 {
		t.Errorf("%d waiters left behind", p)
	}
	t.Logf("%d of %d syncs went through AIO", taken, n)
}

// TestStoreOnDiskSyncsThroughAIO: a store opened on the disk writes its
// WAL through asyncFS, a synced write is there after a reopen, and Close
// releases the AIO context and its eventfd (the reaper exits).
func TestStoreOnDiskSyncsThroughAIO(t *testing.T) {
	if a := newAIOSyncer(); a == nil {
		t.Skip("no AIO here")
	} else {
		a.close()
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Partitions: 16, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	afs, ok := s.fs.(asyncFS)
	if !ok {
		t.Fatalf("the store's file system is %T, want asyncFS", s.fs)
	}
	before := afs.a.taken.Load()
	set(t, s, 3, "k", "v1")
	if afs.a.taken.Load() == before {
		t.Error("a synced write completed no sync through AIO")
	}
	if m := s.FsyncMode(); m != "aio" {
		t.Errorf("FsyncMode() = %q, want aio", m)
	}
	syncs := map[string]float64{}
	for _, mf := range gather(t, s) {
		if mf.GetName() == "rumor_store_file_syncs_total" {
			for _, m := range mf.GetMetric() {
				syncs[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if syncs["aio"] < 1 {
		t.Errorf("rumor_store_file_syncs_total = %v, want some via aio", syncs)
	}
	if _, ok := syncs["syscall"]; !ok {
		t.Errorf("rumor_store_file_syncs_total = %v, want the syscall series too", syncs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-afs.a.reaps:
	default:
		t.Error("Close left the AIO reaper running")
	}
	r, err := Open(Options{Dir: dir, Partitions: 16, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := value(t, r, 3, "k"); got != "v1" {
		t.Fatalf("after reopen: %q, want v1", got)
	}
}

// TestAIOSyncAfterClose: a sync that comes after close (pebble is closed
// first, so this is a bug elsewhere, not a hang here) falls back to the
// system call instead of waiting for a reaper that has stopped.
func TestAIOSyncAfterClose(t *testing.T) {
	a := newTestSyncer(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a.close()
	if err, done := a.sync(f.Fd(), true); done {
		t.Fatalf("sync after close: done (%v), want the plain system call", err)
	}
}

// TestStoreOnATestFileSystemSyncsPlainly: a store on a test's file system
// (here pebble's in-memory one) is left alone: no AIO, and no AIO series.
func TestStoreOnATestFileSystemSyncsPlainly(t *testing.T) {
	s := open(t, Options{Dir: "/db", Sync: true, FS: vfs.NewMem()})
	set(t, s, 1, "k", "v")
	if m := s.FsyncMode(); m != "syscall" {
		t.Errorf("FsyncMode() = %q, want syscall", m)
	}
	for _, mf := range gather(t, s) {
		if mf.GetName() == "rumor_store_file_syncs_total" {
			t.Errorf("a store without AIO exports %s", mf.GetName())
		}
	}
}
