package store

import (
	"runtime"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// yieldingFS makes pebble's flushes and compactions yield the processor
// after every yieldEvery bytes of the sstables they write, so that they
// take their share of a node's CPU in slices of well under a millisecond.
// Go preempts a goroutine that runs on only after 10ms: with one P (rumor
// node --procs 1, or each node of a local cluster) a flush or a
// compaction held every request up for 10ms at a time, again and again
// through each flush. Against one node (redis-benchmark -t
// set,get,incr,set -n 200000 -c 50 -r 100000, --sync=false, three runs
// each way, 2026-11-27) the slowest write took 29-48 ms; with the yields,
// 12-19 ms, and throughput, CPU and p99 within noise (make ab, 4 rounds:
// 0.98-1.04x the requests/s). (A yield every 4 KB, each buffer pebble
// writes, brought the slowest to 12-15 ms but cost the p99 of the writes
// 5-25%.) The
// write-ahead log and the manifest are written as before: their writes
// are on the requests' path.
type yieldingFS struct {
	vfs.FS
	yield func() // runtime.Gosched; a test's counter
}

// yieldEvery is how many bytes a flush or compaction writes between yields.
const yieldEvery = 32 << 10

// yieldsOn are the write categories of the files that yield (pebble's
// getDiskWriteCategoryForCompaction).
var yieldsOn = map[vfs.DiskWriteCategory]bool{
	"pebble-memtable-flush":    true,
	"pebble-compaction":        true,
	"pebble-blob-file-rewrite": true,
}

func newYieldingFS(fs vfs.FS) yieldingFS { return yieldingFS{FS: fs, yield: runtime.Gosched} }

func (fs yieldingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	if err != nil || !yieldsOn[cat] {
		return f, err
	}
	return &yieldingFile{File: f, yield: fs.yield}, nil
}

// Unwrap lets pebble see the file system underneath.
func (fs yieldingFS) Unwrap() vfs.FS { return fs.FS }

// yieldingFile is written by one goroutine at a time, as pebble's sstable
// writers are.
type yieldingFile struct {
	vfs.File
	yield     func()
	unyielded int // bytes written since the last yield
}

func (f *yieldingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.unyielded += n; f.unyielded >= yieldEvery {
		f.unyielded = 0
		f.yield()
	}
	return n, err
}

// walWatchFS fails the store when writing, syncing or creating a
// write-ahead log fails. Pebble panics on such a failure, in a commit or
// in rotating the log, and there the panic becomes a fatal error (an
// unlock of an unlocked mutex) that no recover catches: so once onErr has
// failed the store (it returns true), the operation is reported to pebble
// as done (a log that cannot be created is replaced by one in memory).
// Nothing is acknowledged after that: every write checks the store's
// failure after its apply and after its fsync.
type walWatchFS struct {
	vfs.FS
	onErr func(op string, err error) bool
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs walWatchFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.watch(name, f, err, cat)
}

func (fs walWatchFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.watch(newname, f, err, cat)
}

func (fs walWatchFS) watch(name string, f vfs.File, err error, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if !isWAL(name) {
		return f, err
	}
	if err != nil {
		if !fs.onErr("creating a WAL", err) {
			return f, err
		}
		if f, err = vfs.NewMem().Create("discarded.log", cat); err != nil {
			return nil, err
		}
	}
	return walWatchFile{File: f, onErr: fs.onErr}, nil
}

// Unwrap lets pebble see the file system underneath.
func (fs walWatchFS) Unwrap() vfs.FS { return fs.FS }

type walWatchFile struct {
	vfs.File
	onErr func(op string, err error) bool
}

func (f walWatchFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err != nil && f.onErr("writing the WAL", err) {
		return len(p), nil
	}
	return n, err
}

func (f walWatchFile) Sync() error {
	err := f.File.Sync()
	if err != nil && f.onErr("WAL fsync", err) {
		return nil
	}
	return err
}

func (f walWatchFile) SyncData() error {
	err := f.File.SyncData()
	if err != nil && f.onErr("WAL fsync", err) {
		return nil
	}
	return err
}

func (f walWatchFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if err != nil && f.onErr("WAL fsync", err) {
		return true, nil
	}
	return full, err
}
