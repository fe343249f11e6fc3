package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// sstCreateFails makes every creation of an sstable fail with ENOSPC once
// fail is set (a full disk as a flush or compaction meets it), and counts
// the attempts.
type sstCreateFails struct {
	fail     *atomic.Bool
	attempts *atomic.Int64
}

func (f sstCreateFails) String() string { return "sstCreateFails" }
func (f sstCreateFails) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") && f.fail.Load() {
		f.attempts.Add(1)
		return syscall.ENOSPC
	}
	return nil
}

// TestFailedFlushFailsTheStore: a flush that cannot write its sstable (a
// full disk) is retried by pebble at once and for ever (its flush has
// "TODO: count consecutive flush errors and backoff"). The store did not
// fail: once the memtables were full every write blocked for ever, while a
// goroutine spun on flush attempts, and the node looked healthy. It
// fail-stops now, as for a failed WAL fsync, once flushes have failed for
// a while (the grace, here 100ms).
func TestFailedFlushFailsTheStore(t *testing.T) {
	var fail atomic.Bool
	var attempts atomic.Int64
	var got failures
	s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, MemTableSize: 256 << 10, ObjectCacheSize: -1,
		storageErrorGrace: 100 * time.Millisecond,
		FS:                errorfs.Wrap(vfs.NewMem(), sstCreateFails{&fail, &attempts}),
		OnFailure: func(err error) {
			got.record(err)
			// The disk recovers once the store has failed, as the node's
			// exit would end pebble's retries: a write held up by the
			// write stall then returns, and Close does not wait for ever.
			fail.Store(false)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fail.Store(true)
	val := strings.Repeat("x", 1000)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 5000; i++ {
			if _, err := s.Update(1, []byte(fmt.Sprint("k", i)), putFn(s, val)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "flushing a memtable") {
			t.Errorf("5000 writes of 1 KB with every flush failing: %v, want ErrFailed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a write has been blocked for 10 s with every flush failing: Err()=%v, OnFailure calls=%d; pebble tried to create an sstable %d times",
			s.Err(), got.calls.Load(), attempts.Load())
	}
	if calls := got.settled(); calls != 1 {
		t.Errorf("OnFailure called %d times, want 1", calls)
	}
}

// walWriteFails makes every write to a write-ahead log fail with ENOSPC
// once fail is set.
type walWriteFails struct{ fail *atomic.Bool }

func (f walWriteFails) String() string { return "walWriteFails" }
func (f walWriteFails) MaybeError(op errorfs.Op) error {
	if f.fail.Load() && op.Kind == errorfs.OpFileWrite && strings.HasSuffix(op.Path, ".log") {
		return syscall.ENOSPC
	}
	return nil
}

// TestFailedWALWriteFailsTheStore: a write to the WAL that fails (ENOSPC)
// made pebble's commit panic inside Update, in the request's goroutine,
// with the key's stripe lock held: the process died of a panic. It fails
// the store now, as a failed fsync does (ErrFailed, OnFailure).
func TestFailedWALWriteFailsTheStore(t *testing.T) {
	var fail atomic.Bool
	var got failures
	s, err := Open(Options{Dir: "/db", Partitions: 16, FlushInterval: 50 * time.Millisecond,
		FS: errorfs.Wrap(vfs.NewMem(), walWriteFails{&fail}), OnFailure: got.record})
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	val := strings.Repeat("x", 1000)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		var perr any
		func() {
			defer func() { perr = recover() }()
			_, err = s.Update(1, []byte(fmt.Sprint("k", i)), putFn(s, val))
		}()
		if perr != nil {
			t.Fatalf("write %d after the WAL's writes began to fail: Update panicked (%v) instead of returning ErrFailed", i, perr)
		}
		if errors.Is(err, ErrFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes and 10 s after the WAL's writes began to fail, the store has not failed", i)
		}
	}
	if calls := got.settled(); calls != 1 || !errors.Is(s.Err(), ErrFailed) {
		t.Errorf("OnFailure called %d times, Err() = %v", calls, s.Err())
	}
}

// onceSSTFails fails the first creation of an sstable once armed (one
// transient EMFILE, as when connections briefly take every descriptor).
type onceSSTFails struct{ armed, fired *atomic.Bool }

func (f onceSSTFails) String() string { return "onceSSTFails" }
func (f onceSSTFails) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") && f.armed.Load() && f.fired.CompareAndSwap(false, true) {
		return syscall.EMFILE
	}
	return nil
}

// TestAFlushThatFailsOnceDoesNotFailTheStore: a single failed flush, which
// pebble retries at once and which then succeeds (no data at risk), must
// not fail-stop the store: EMFILE is within reach of clients that open
// many connections. Only flushes failing for the grace fail it.
func TestAFlushThatFailsOnceDoesNotFailTheStore(t *testing.T) {
	var armed, fired atomic.Bool
	var got failures
	s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, MemTableSize: 256 << 10, ObjectCacheSize: -1,
		storageErrorGrace: 100 * time.Millisecond,
		FS:                errorfs.Wrap(vfs.NewMem(), onceSSTFails{&armed, &fired}), OnFailure: got.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Update(1, []byte("k"), putFn(s, "v")); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if err := s.Flush(); err != nil && !errors.Is(err, ErrFailed) {
		t.Logf("flush: %v", err)
	}
	if !fired.Load() {
		t.Fatal("no sstable creation was failed: the test proves nothing")
	}
	if err := s.Err(); err != nil {
		t.Errorf("one transient EMFILE on a flush that pebble retried fail-stopped the store: %v", err)
	}
}

// walCreateFails fails the creation of a new write-ahead log once armed.
type walCreateFails struct{ armed *atomic.Bool }

func (f walCreateFails) String() string { return "walCreateFails" }
func (f walCreateFails) MaybeError(op errorfs.Op) error {
	if (op.Kind == errorfs.OpCreate || op.Kind == errorfs.OpReuseForWrite) && strings.HasSuffix(op.Path, ".log") && f.armed.Load() {
		return syscall.EMFILE
	}
	return nil
}

// TestWALFailuresAtRotationFailTheStore: a WAL fsync that fails first when
// pebble rotates its log (without Sync), and a failed creation of the next
// log, made pebble panic with its mutexes in disorder: a fatal error no
// recover catches, which killed the process. Each fails the store now.
// The writes run in a child process, since a regression kills it.
func TestWALFailuresAtRotationFailTheStore(t *testing.T) {
	if fault := os.Getenv("RUMOR_TEST_WAL_FAULT"); fault != "" {
		var fail atomic.Bool
		var inj errorfs.Injector = testutil.WALSyncFails{Fail: &fail}
		sync := false
		if fault == "create" {
			inj, sync = walCreateFails{&fail}, true
		}
		var got failures
		s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: sync, FlushInterval: time.Hour, MemTableSize: 256 << 10,
			FS: errorfs.Wrap(vfs.NewMem(), inj), OnFailure: got.record})
		if err != nil {
			t.Fatal(err)
		}
		fail.Store(true)
		val := strings.Repeat("x", 1000)
		for i := 0; i < 3000; i++ {
			if _, err := s.Update(1, []byte(fmt.Sprint("k", i)), putFn(s, val)); err != nil {
				if calls := got.settled(); !errors.Is(err, ErrFailed) || calls != 1 {
					t.Fatalf("write %d: %v (OnFailure called %d times), want ErrFailed", i, err, calls)
				}
				return
			}
		}
		t.Fatalf("3000 writes of 1 KB with the WAL failing (%s): the store has not failed", fault)
	}
	for _, fault := range []string{"sync", "create"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWALFailuresAtRotationFailTheStore$", "-test.count=1")
		cmd.Env = append(os.Environ(), "RUMOR_TEST_WAL_FAULT="+fault)
		if out, err := cmd.CombinedOutput(); err != nil {
			first, _, _ := strings.Cut(string(out), "\n\ngoroutine ")
			t.Errorf("the WAL failing (%s) at rotation: the writing process ended with %v:\n%.1500s", fault, err, first)
		}
	}
}

// TestAFlushFailingWhileOpeningIsReported: a node restarted on a full disk
// replays its WAL, and the flush that follows fails, and is retried by
// pebble at once and for ever, inside Open: the node never started, spun
// a CPU and (not started yet) ignored SIGTERM. OnFailure is called then,
// while Open still runs, so that the process can end.
func TestAFlushFailingWhileOpeningIsReported(t *testing.T) {
	fs := vfs.NewCrashableMem()
	// A memtable large enough that nothing is flushed: all in the WAL.
	s, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs, Sync: true, MemTableSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("x", 1000)
	for i := range 1000 { // about four of the reopened store's memtables
		if _, err := s.Update(1, []byte(fmt.Sprint("k", i)), putFn(s, val)); err != nil {
			t.Fatal(err)
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()

	var fail atomic.Bool
	var attempts atomic.Int64
	fail.Store(true)
	reported := make(chan error, 1)
	opened := make(chan error, 1)
	go func() {
		r, err := Open(Options{Dir: "/db", Partitions: 16, FS: errorfs.Wrap(crashed, sstCreateFails{&fail, &attempts}), MemTableSize: 256 << 10,
			storageErrorGrace: 100 * time.Millisecond,
			OnFailure: func(err error) {
				select {
				case reported <- err:
				default:
				}
				fail.Store(false) // the disk recovers: Open may end
			}})
		if err == nil {
			r.Close()
		}
		opened <- err
	}()
	select {
	case err := <-reported:
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "while opening") {
			t.Errorf("OnFailure while opening: %v", err)
		}
	case err := <-opened:
		if attempts.Load() == 0 {
			t.Skipf("Open (%v) flushed nothing: the test proves nothing", err)
		}
		t.Fatalf("Open returned (%v) after %d failed flushes without OnFailure", err, attempts.Load())
	case <-time.After(10 * time.Second):
		t.Fatalf("10 s into an Open whose flushes fail (%d tries), OnFailure has not been called", attempts.Load())
	}
	<-opened
}
