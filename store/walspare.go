package store

import (
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// On ext4 and xfs, an fdatasync of a file that grew since the last one
// must also commit the file's new size and block allocation to the file
// system's journal: two more writes and a cache flush. Pebble appends to a
// new write-ahead log, so with --sync every commit paid that until pebble
// had old logs to recycle (it rewrites an obsolete log in place, "faster
// ... due to avoiding metadata updates"). A fresh or restarted node found
// none, and pebble starts with small memtables (256 KB, doubling), so a
// new log came every few thousand writes. Measured here (ext4 on a virtio
// disk, 2.2 KB written between fdatasyncs): 290-315 µs a sync appending,
// 180-195 µs rewriting a file already written.
//
// spareFS is what Cassandra does with its commit log segments: it writes a
// spare log full of zeros ahead of time, in the background, and syncs it;
// when pebble creates its next log, the spare is renamed to the new log's
// name and opened without truncation (as pebble's own recycling does), so
// pebble writes over allocated, already-synced blocks. The zeros past
// pebble's records are what recovery already expects after the last
// record of a preallocated or recycled log: pebble reads a zeroed chunk
// with no valid record after it as the log's end. Pebble syncs the
// directory after creating a log, which makes the rename durable with it.
//
// The spares grow as pebble's memtables do, from spareMinSize doubling up
// to max (pebble preallocates 1.1x the memtable size per log); past a
// spare's end a log is appended as before. The first is written as the
// store opens, for the log pebble creates then; each next one only after
// the last was used, so a store whose logs pebble recycles writes no more.
// The one left at Close is removed, as is a stale one at Open.
type spareFS struct {
	vfs.FS
	path string // the spare's name, in the data directory
	dir  string
	max  int64

	mu      sync.Mutex
	ready   int64 // size of the spare on disk, 0 if none is ready
	next    int64 // size of the next one to write
	running bool  // a goroutine is writing one
	closed  bool
	writing sync.WaitGroup

	used, missed atomic.Uint64 // logs created from a spare, and without one
}

const (
	spareName    = "rumor-wal-spare"
	spareMinSize = 1 << 20
)

// zeroBlock is what a spare is written with.
var zeroBlock [256 << 10]byte

// newSpareFS returns fs with spare logs for the pebble store in dir (which
// exists), whose memtables are memtable bytes. It writes the first spare before it
// returns (a few milliseconds), so that the log pebble creates as it opens
// is one: its first few thousand writes are a new node's first.
func newSpareFS(fs vfs.FS, dir string, memtable uint64) *spareFS {
	s := &spareFS{FS: fs, dir: filepath.Clean(dir), path: fs.PathJoin(dir, spareName),
		max: max(int64(memtable+memtable/10), spareMinSize), next: spareMinSize}
	_ = fs.Remove(s.path) // a stale one, perhaps half written
	if s.write(s.next) {
		s.ready, s.next = s.next, min(2*s.next, s.max)
	}
	return s
}

// isLog reports whether name is one of pebble's write-ahead logs in the
// data directory (NNNNNN.log).
func (s *spareFS) isLog(name string) bool {
	return strings.HasSuffix(name, ".log") && filepath.Clean(filepath.Dir(name)) == s.dir
}

// Create creates a log from the spare if one is ready, and starts writing
// the next one.
func (s *spareFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if !s.isLog(name) {
		return s.FS.Create(name, cat)
	}
	// Under the lock: the next spare must not be started (created under
	// the same name) before this one is renamed away.
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.startLocked()
	if s.ready > 0 {
		s.ready = 0
		f, err := s.FS.ReuseForWrite(s.path, name, cat)
		if err == nil {
			s.used.Add(1)
			return f, nil
		}
		// The rename or the open failed: a plain new log (which
		// truncates whatever the rename left under name).
	}
	s.missed.Add(1)
	return s.FS.Create(name, cat)
}

// startLocked starts writing the next spare unless one is ready or being
// written. The caller holds s.mu.
func (s *spareFS) startLocked() {
	if s.running || s.ready > 0 || s.closed {
		return
	}
	s.running = true
	size := s.next
	s.writing.Add(1)
	go func() {
		defer s.writing.Done()
		ok := s.write(size)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.running = false
		if ok && !s.closed {
			s.ready = size
			s.next = min(2*size, s.max)
		} else if ok {
			_ = s.FS.Remove(s.path) // written as the store closed
		}
	}()
}

// write writes a spare of size zero bytes and syncs it (through the store's
// AIO syncs when s.FS has them). It gives up on any error, and at close,
// and then removes what it wrote.
func (s *spareFS) write(size int64) (ok bool) {
	f, err := s.FS.Create(s.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return false
	}
	defer func() {
		if !ok {
			_ = s.FS.Remove(s.path)
		}
	}()
	ok = true
	for n := int64(0); n < size && ok; n += int64(len(zeroBlock)) {
		s.mu.Lock()
		ok = !s.closed
		s.mu.Unlock()
		if ok {
			_, err = f.Write(zeroBlock[:min(int64(len(zeroBlock)), size-n)])
			ok = err == nil
		}
	}
	if ok {
		ok = f.SyncData() == nil
	}
	return f.Close() == nil && ok
}

// close stops writing spares and removes the one on disk. Call it after
// pebble closed.
func (s *spareFS) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.writing.Wait()
	s.mu.Lock()
	s.ready = 0
	s.mu.Unlock()
	_ = s.FS.Remove(s.path)
}

// Unwrap lets pebble see the file system underneath.
func (s *spareFS) Unwrap() vfs.FS { return s.FS }
