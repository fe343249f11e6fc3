// Package store is a node's local state in pebble: the objects it holds,
// keyed by partition so that one partition is one range scan, and the
// node's identity (its actor id and partition count).
//
// It knows nothing of peers. Open a Store with Options, then read with Get
// and write with Update, which runs a read-modify-write of one key
// atomically and durably:
//
//	s, err := store.Open(store.Options{Dir: dir, Partitions: 4096, Sync: true})
//	obj, err := s.Update(p, key, func(cur crdt.Object, found bool) (crdt.Object, error) {
//		return cur.Reg.Update(...), nil
//	})
//
// # Durability
//
// With Options.Sync, Update returns only after its WAL record is fsynced.
// Concurrent updates share fsyncs (pebble's commit pipeline is a group
// commit): the update is applied to the memtable under the key's lock, the
// lock is released, and then the caller waits for the sync, so a slow disk
// never serializes writers to other keys. Without Sync, Update returns once
// the write is in the memtable and the WAL buffer; a crash may lose the last
// moments of writes.
//
// # Key layout
//
//	0x00 "actor"        node actor id, 8 bytes big-endian; replaced after
//	                    an unclean shutdown
//	0x00 "clean"        present while the directory is cleanly closed
//	0x00 "partitions"   Q, 4 bytes big-endian
//	0x01 p(2 bytes BE) key  an object (crdt encoding)
//	0x02 len(1 byte) target p(2 bytes BE) key
//	                    a hint: the object at p, key is held for the
//	                    node named target; value 0x01 (version), seq
//	                    (8 bytes BE)
//
// # Hinted handoff
//
// When a replica of a key is unreachable, another node stands in for it
// (a sloppy quorum): it stores the object as its own with UpdateHinted or
// MergeHinted, which also record a hint naming the intended node in the
// same batch. A background process lists a target's hints with ScanHints,
// sends each object to the target and then removes the hint with
// DeleteHint, which keeps a hint rewritten in the meantime. Hints are
// bounded by Options.MaxHints and counted per target in memory (Hints).
//
// All methods are safe for concurrent use. Objects returned, and the
// current object an Update hands its fn, are the caller's, except for the
// bytes of their sibling values, which may be the object cache's own (a
// cached object is decoded without copying them): treat those as
// read-only, as crdt's operations do, and build new values instead of
// editing them in place. (An edit would change what later reads of the
// key return, and a failed Update's edit would outlive it.)
package store

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/every"
)

// Errors returned by Open, by every call after Close, and by every call
// after the store failed (errors.Is(err, ErrFailed); see Options.OnFailure).
var (
	ErrPartitionsMismatch = errors.New("store: data directory was created with another partition count")
	ErrClosed             = errors.New("store: closed")
	ErrFailed             = errors.New("store: failed")
	// ErrCorrupt is wrapped, with ErrFailed, by the failure of a store
	// that found a table failing its checksum.
	ErrCorrupt = errors.New("store: on-disk corruption")
)

// Options configure a Store. The zero value of each field means its default.
type Options struct {
	// Dir is the data directory; created if missing. Required.
	Dir string
	// Partitions is Q. A directory remembers the Q it was created with and
	// refuses to open with another. Required.
	Partitions int
	// Sync makes every write durable (fsynced) before Update returns.
	Sync bool
	// FlushInterval, without Sync, is how often the WAL is written and
	// fsynced if there were writes: the most a crash of the process or the
	// machine can lose (pebble otherwise keeps up to a 32 KB block of
	// acknowledged writes in memory). Default 100ms; negative never.
	FlushInterval time.Duration
	// SyncWindow, with Sync, is the least time between two fsyncs of the
	// WAL (pebble's WALMinSyncInterval): writes that arrive meanwhile wait
	// and share the next one, as in Cassandra's group commitlog mode.
	// Every write is still fsynced before it is acknowledged. Fewer fsyncs
	// cost less CPU and more latency: it pays when the CPUs are the
	// bottleneck (three nodes on two cores) and not otherwise. Default 0:
	// an fsync starts as soon as the previous one ends.
	SyncWindow time.Duration
	// CacheSize is pebble's block cache in bytes. Default 64 MiB. It bounds
	// most of the node's memory beyond the memtables.
	CacheSize int64
	// ObjectCacheSize is the bytes of encoded objects kept in memory for
	// recently used keys, in front of pebble (see objectCache). Default
	// 16 MiB; negative disables it.
	ObjectCacheSize int64
	// MemTableSize is the size of one pebble memtable. Default 16 MiB; up
	// to four may be in memory while flushes catch up.
	MemTableSize uint64
	// IdleFlush is how long writes must pause before the store writes its
	// memtable out to a table, if the memtable took at least a sixteenth
	// of MemTableSize since the last such flush. An insert into pebble's
	// memtable (a skiplist) costs more the more it holds, in cache misses:
	// after a burst of writes the next burst starts on a full skiplist,
	// and pays for its flush too. Flushing in the pause moves both out of
	// the next burst. Default 250ms; negative: never.
	IdleFlush time.Duration
	// MaxOpenFiles bounds the files pebble keeps open (its table cache).
	// Default pebble's, 1000.
	MaxOpenFiles int
	// MaxHints is the most hint records kept (see UpdateHinted). Past it a
	// stand-in refuses hinted writes with ErrHintsFull rather than let the
	// hints for a long-dead node fill the disk; the caller then fails the
	// write or stores it elsewhere. Default 1_000_000; negative: none
	// allowed.
	MaxHints int
	// FS replaces the filesystem, for tests (vfs.NewCrashableMem).
	FS vfs.FS
	// Logger receives pebble's messages. Default: discard.
	Logger *slog.Logger
	// OnFailure is called once, with the cause, when the store fails: a
	// WAL fsync that returned an error. What the failed sync covered may be
	// in the memtable and not on disk, and the WAL accepts no more writes,
	// so from then on every call returns an error wrapping ErrFailed rather
	// than serve or build on writes that may be lost (pebble treats a failed
	// commit the same way, as fatal; PostgreSQL too, after fsync failures
	// were found to lose data silently when retried). Only a restart, which
	// replays what reached the disk, brings the store back. The node shuts
	// down. It must not block or call the store.
	OnFailure func(error)
	// storageErrorGrace, in tests, replaces storageErrorGrace.
	storageErrorGrace time.Duration
	// Owner names the node the directory belongs to. A directory first
	// opened under another name (another node's data copied, or a node
	// restarted with another --name) gets a new actor id, as after a
	// crash: two nodes writing under one actor would lose each other's
	// increments and reuse each other's dots. Empty: not checked.
	Owner string
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("store: Dir is required"))
	}
	if o.Partitions < 1 || o.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("store: Partitions must be in [1, 65536], not %d", o.Partitions))
	}
	if o.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("store: CacheSize must not be negative, not %d", o.CacheSize))
	}
	if o.SyncWindow < 0 || o.SyncWindow > time.Second {
		errs = append(errs, fmt.Errorf("store: SyncWindow must be between 0 and 1s, not %v", o.SyncWindow))
	}
	return errors.Join(errs...)
}

func (o *Options) ensureDefaults() {
	if o.CacheSize == 0 {
		o.CacheSize = 64 << 20
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.ObjectCacheSize == 0 {
		o.ObjectCacheSize = 16 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	if o.IdleFlush == 0 {
		o.IdleFlush = 250 * time.Millisecond
	}
	if o.MaxHints == 0 {
		o.MaxHints = 1_000_000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// lockStripes serializes read-modify-writes of one key; a power of two.
const lockStripes = 1024

// Store is a node's local state. See the package doc.
type Store struct {
	db        *pebble.DB
	cache     interface{ Unref() }
	fs        vfs.FS   // from syncingFS
	spares    *spareFS // pebble's file system on disk, nil for a test's
	releaseFS func()   // after db.Close: what fs holds
	objs      *objectCache
	keys      *keyFilter // every object key held, to skip looking for new ones
	wo        *pebble.WriteOptions
	actor     uint64
	newActor  bool   // the actor id was replaced after an unclean shutdown
	restored  bool   // the actor id was replaced: the directory is a restored copy (closeMarkName)
	prevOwner string // the actor id was replaced: the directory was this other node's
	owner     string // Options.Owner
	q         int
	locks     [lockStripes]sync.Mutex
	maxHints  int           // 0: no hints allowed
	hintSeq   atomic.Uint64 // the last hint Seq handed out

	mu struct {
		sync.Mutex
		hints     map[string]int // hint records per target, none at 0
		hintTotal int
	}

	closeOnce sync.Once
	closeErr  error
	// Calls in flight, and whether Close has begun: Close waits for the
	// calls, later ones return ErrClosed (pebble panics on a closed DB,
	// and a late call, such as a replica copy that arrived during a
	// shutdown, must get an error, not crash the process).
	users     atomic.Int64
	closing   atomic.Bool
	drained   chan struct{}
	drainOnce sync.Once
	dir       string
	failed    atomic.Pointer[error] // the cause, once the store failed (see fail)
	failedCh  chan struct{}         // closed when failed is set
	onFailure func(error)

	// written counts the bytes of the writes applied (objects and hint
	// records): the periodic WAL sync looks for a change, idleFlushLoop
	// for enough of one.
	written  atomic.Uint64
	synced   atomic.Uint64 // periodic WAL syncs done (for tests)
	stopSync chan struct{}
	idleStop chan struct{} // closed by Close: idleFlushLoop stops
	idleDone chan struct{}
	syncDone chan struct{}
}

var (
	metaActor      = []byte("\x00actor")
	metaClean      = []byte("\x00clean")
	metaPartitions = []byte("\x00partitions")
	metaOwner      = []byte("\x00owner")
)

const objectPrefix = 0x01

// lockDir creates dir if needed and takes pebble's lock on it.
func lockDir(dir string, fs vfs.FS) (*pebble.Lock, error) {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, openError(dir, err)
	}
	return lock, nil
}

func openError(dir string, err error) error {
	if errors.Is(err, syscall.EAGAIN) {
		// What fcntl(F_SETLK) says on Linux of pebble's LOCK file when
		// another process holds it. (EACCES, its other answer, is also a
		// permission problem: left as it is.)
		return fmt.Errorf("store: open %s: the directory is locked by another process (a node running on it, or one still exiting): %w", dir, err)
	}
	return fmt.Errorf("store: open %s: %w", dir, err)
}

// Open opens or creates the store in o.Dir. A new directory gets a fresh
// random actor id; an existing one keeps its own. Open reads every hint
// record to count them, in time proportional to the hints held.
func Open(o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.ensureDefaults()
	cache := pebble.NewCache(o.CacheSize)
	fs, releaseFS := syncingFS(o.FS)
	popts := &pebble.Options{
		Cache:        cache,
		MemTableSize: o.MemTableSize,
		MaxOpenFiles: o.MaxOpenFiles,
		FS:           fs,
		Logger:       &pebbleLogger{l: o.Logger},
	}
	var spares *spareFS
	if o.FS == nil {
		// The disk: spare logs (see walspare.go). They are written in the
		// data directory, so under its lock, taken here for pebble: a
		// second node started on the directory must not touch the
		// spare of the one running there.
		lock, err := lockDir(o.Dir, fs)
		if err != nil {
			cache.Unref()
			releaseFS()
			return nil, err
		}
		spares = newSpareFS(fs, o.Dir, o.MemTableSize)
		release := releaseFS
		popts.FS, popts.Lock = spares, lock
		releaseFS = func() { spares.close(); lock.Close(); release() } // after the DB's Close
	}
	if err := checkMarker(o.Dir, popts.FS); err != nil {
		cache.Unref()
		releaseFS()
		return nil, err
	}
	hold := newHoldRemovesFS(popts.FS) // see opencheck.go
	var failer atomic.Pointer[Store]   // the store, once made: for what fails it from pebble's side
	popts.FS = walWatchFS{FS: newYieldingFS(hold), onErr: func(op string, err error) bool {
		s := failer.Load()
		if s != nil {
			s.fail(fmt.Errorf("%s: %w", op, err))
		}
		return s != nil
	}}
	// Bloom filters on every level (later levels inherit L0's): a write to
	// a new key, and a GET of a missing one, then skip the sstables that
	// cannot hold the key instead of searching each one's index.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	if w := o.SyncWindow; w > 0 {
		popts.WALMinSyncInterval = func() time.Duration { return w }
	}
	// Flushes and compactions that keep failing (a full disk, an I/O
	// error, a corrupt table) fail the store, as a failed WAL fsync does:
	// pebble retries a failed flush at once and for ever, so the node spun
	// a CPU while its writes stalled, looking healthy to gossip and
	// clients. One that fails and then succeeds (a moment without file
	// descriptors) does not.
	var flushErrs, compactErrs errorRun
	var openFailed atomic.Bool
	grace := cmp.Or(o.storageErrorGrace, storageErrorGrace)
	popts.EventListener = &pebble.EventListener{
		FlushEnd: func(info pebble.FlushInfo) {
			err := info.Err
			if !flushErrs.persists(err != nil && err.Error() != "pebble: empty table", grace) {
				return
			}
			err = fmt.Errorf("pebble: flushing a memtable failed for %v: %w", grace, err)
			if s := failer.Load(); s != nil {
				s.fail(err)
			} else if o.OnFailure != nil && openFailed.CompareAndSwap(false, true) {
				// While opening (replaying the WAL on a full disk, say):
				// there is no store to fail yet, and Open may never return.
				o.OnFailure(fmt.Errorf("%w: while opening: %w", ErrFailed, err))
			}
		},
		// A table or block that fails its checksum: pebble's default
		// panics (every start, since the key filter's scan reads every
		// block). The store fails instead, naming the file.
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			err := fmt.Errorf("%w in %s: %v. Restore the data directory from a backup, or move it away and start the node empty to refill from its replicas", ErrCorrupt, info.Path, info.Details)
			if s := failer.Load(); s != nil {
				s.fail(err)
			} else if o.OnFailure != nil && openFailed.CompareAndSwap(false, true) {
				o.OnFailure(fmt.Errorf("%w: while opening: %w", ErrFailed, err))
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			s := failer.Load()
			if err := info.Err; s != nil && compactErrs.persists(err != nil && !errors.Is(err, pebble.ErrCancelledCompaction), grace) {
				s.fail(fmt.Errorf("pebble: compactions failed for %v: %w", grace, err))
			}
		},
	}
	db, err := pebble.Open(o.Dir, popts)
	if err != nil {
		cache.Unref()
		releaseFS()
		return nil, openError(o.Dir, err)
	}
	s := &Store{db: db, cache: cache, fs: fs, spares: spares, releaseFS: releaseFS, objs: newObjectCache(o.ObjectCacheSize), keys: newKeyFilter(estimateKeys(db)), wo: pebble.NoSync, q: o.Partitions,
		maxHints: max(o.MaxHints, 0), drained: make(chan struct{}), onFailure: o.OnFailure, owner: o.Owner, dir: o.Dir, failedCh: make(chan struct{})}
	if o.Sync {
		s.wo = pebble.Sync
	}
	failer.Store(s)
	err = s.initMeta(func() ([]string, error) { return unknownTables(db, hold, o.Dir) })
	if err == nil {
		err = hold.release()
	}
	if err == nil {
		err = s.loadHints(time.Now())
	}
	if err != nil {
		db.Close()
		cache.Unref()
		releaseFS()
		return nil, err
	}
	if !o.Sync && o.FlushInterval > 0 {
		s.stopSync, s.syncDone = make(chan struct{}), make(chan struct{})
		go s.syncLoop(o.FlushInterval, o.Logger)
	}
	if o.IdleFlush > 0 {
		s.idleStop, s.idleDone = make(chan struct{}), make(chan struct{})
		go s.idleFlushLoop(o.IdleFlush, o.MemTableSize/16, o.Logger)
	}
	_ = s.enter() // the scan is a call in flight: Close waits for it to stop (nothing has closed or failed yet)
	go s.scanKeys(o.Logger)
	return s, nil
}

// estimateKeys guesses, from the sstables' entry counts and the memtables'
// size, how many object keys a just-opened pebble holds, so that the key
// filter starts at about its final size: one layer, one lookup, 10 bits a
// key. A filter grown from its smallest size while the scan adds the keys
// ends with up to three times that and a lookup in every layer. The guess
// counts every version of a key and every entry that is not an object, so
// it errs high; an error costs memory or a layer, never a false negative.
func estimateKeys(db *pebble.DB) int64 {
	var n uint64
	if levels, err := db.SSTables(pebble.WithProperties()); err == nil {
		for _, tables := range levels {
			for _, t := range tables {
				if t.Properties != nil {
					n += t.Properties.NumEntries
				}
			}
		}
	}
	// An entry of a small object takes about 100 bytes of memtable.
	n += db.Metrics().MemTable.Size / 100
	return int64(min(n, 1<<40))
}

// scanKeys adds every object key to the key filter, then lets the filter
// answer: until then every lookup searches pebble. It reads a snapshot
// taken when it starts; keys created after it are added by their writes.
// It stops early when the store closes.
func (s *Store) scanKeys(logger *slog.Logger) {
	defer s.leave()
	start := time.Now()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{objectPrefix}, UpperBound: []byte{objectPrefix + 1}})
	if err != nil {
		logger.Error("key filter: scan failed; every lookup of a new key will search pebble", "err", err)
		return
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		s.keys.add(it.Key())
		if n++; n%4096 == 0 && s.closing.Load() {
			return
		}
	}
	if err := it.Error(); err != nil {
		logger.Error("key filter: scan failed; every lookup of a new key will search pebble", "err", err)
		return
	}
	s.keys.complete.Store(true)
	logger.Debug("key filter ready", "keys", n, "took", time.Since(start), "bytes", s.keys.bytes())
}

// syncLoop fsyncs the WAL every interval in which there were writes (the
// everysec of a store opened without Sync).
func (s *Store) syncLoop(interval time.Duration, logger *slog.Logger) {
	defer close(s.syncDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			n := s.written.Load()
			if n == last {
				continue
			}
			if err := s.syncWAL(); err != nil {
				logger.Error("periodic WAL sync failed", "err", err)
				return // the store has failed: nothing more to sync
			}
			last = n
			s.synced.Add(1)
		}
	}
}

// idleFlushLoop flushes the memtable when writes have paused for idle
// and at least minBytes were written since its last flush (see
// Options.IdleFlush). It looks every idle/2, so a pause is seen after
// idle to 1.5 idle.
func (s *Store) idleFlushLoop(idle time.Duration, minBytes uint64, logger *slog.Logger) {
	defer close(s.idleDone)
	t := time.NewTicker(max(idle/2, time.Millisecond))
	defer t.Stop()
	var f idleFlusher
	for {
		select {
		case <-s.idleStop:
			return
		case now := <-t.C:
			if !f.due(s.written.Load(), now, idle, minBytes) {
				continue
			}
			if _, err := s.db.AsyncFlush(); err != nil {
				logger.Debug("idle flush failed", "err", err)
			}
		}
	}
}

// idleFlusher decides, from the store's count of bytes written, when a
// pause in the writes calls for a flush.
type idleFlusher struct {
	last, flushed uint64    // the count seen last, and at the last flush
	quietSince    time.Time // when the count last moved
}

// due reports whether to flush now, given the count written at now: it
// has not moved for idle, and moved by at least minBytes since the last
// flush. It counts the flush as done when it says so.
func (f *idleFlusher) due(written uint64, now time.Time, idle time.Duration, minBytes uint64) bool {
	if written != f.last || f.quietSince.IsZero() {
		f.last, f.quietSince = written, now
		return false
	}
	if written-f.flushed < minBytes || now.Sub(f.quietSince) < idle {
		return false
	}
	f.flushed = written
	return true
}

// syncWAL fsyncs the WAL (an empty record, synced), as the periodic sync
// does without Options.Sync. A failed fsync fails the store (see
// Options.OnFailure), as with Sync: through pebble's Apply it would be a
// panic in this goroutine, and the next write's a panic in a request's.
func (s *Store) syncWAL() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.LogData(nil, nil); err != nil {
		return err
	}
	if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return s.fail(fmt.Errorf("WAL write: %w", err))
	}
	if err := b.SyncWait(); err != nil {
		return s.fail(fmt.Errorf("WAL fsync: %w", err))
	}
	return nil
}

// initMeta reads the directory's identity (partitions, actor, owner) or
// writes a new one. unknown lists the tables in the directory that pebble
// does not hold (and deletes as obsolete): a database without an identity
// and with such tables lost its MANIFEST's record of them, and is refused.
func (s *Store) initMeta(unknown func() ([]string, error)) error {
	b := s.db.NewBatch()
	defer b.Close()
	q, ok, err := s.getMeta(metaPartitions)
	var dropped []string
	if err == nil && !ok {
		dropped, err = unknown()
	}
	if err == nil && len(dropped) > 0 {
		if _, hasActor, _ := s.getMeta(metaActor); !hasActor {
			return fmt.Errorf("store: open %s: pebble opened it without the node's identity, and would delete tables it does not know (%s): its MANIFEST is damaged or is not this database's. Nothing was deleted. Restore the directory from a backup; to start this node empty instead, move the directory away",
				s.dir, strings.Join(dropped, ", "))
		}
	}
	switch {
	case err != nil:
		return err
	case !ok:
		b.Set(metaPartitions, binary.BigEndian.AppendUint32(nil, uint32(s.q)), nil)
	case len(q) != 4:
		return fmt.Errorf("store: corrupt partition count %x", q)
	case int(binary.BigEndian.Uint32(q)) != s.q:
		return fmt.Errorf("%w: it has %d partitions, this node was started with %d",
			ErrPartitionsMismatch, binary.BigEndian.Uint32(q), s.q)
	}
	// A new actor id for a new directory, and after an unclean shutdown:
	// a crash may have lost writes that were already visible (to readers,
	// or with --sync=false acknowledged), and reusing their dots or counter
	// totals under the same actor would let a client's context, or another
	// replica's copy, silently cover or outweigh new writes (Riak's KV679).
	// A fresh actor's events are new to everyone.
	a, ok, err := s.getMeta(metaActor)
	if err != nil {
		return err
	}
	mark, clean, err := s.getMeta(metaClean)
	if err != nil {
		return err
	}
	// Closed cleanly, but is this the directory that was closed, or a
	// restored copy of it (closeMarkName)? (A directory closed by a build
	// before the close mark has no identity to compare.)
	restored := clean && len(mark) > 0 && !bytes.Equal(mark, closeMarkIdentity(s.fs, s.dir))
	clean = clean && !restored
	owner, hasOwner, err := s.getMeta(metaOwner)
	if err != nil {
		return err
	}
	renamed := hasOwner && s.owner != "" && string(owner) != s.owner
	switch {
	case ok && len(a) != 8:
		return fmt.Errorf("store: corrupt actor id %x", a)
	case ok && clean && !renamed:
		s.actor = binary.BigEndian.Uint64(a)
	default:
		var buf [8]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return fmt.Errorf("store: actor id: %w", err)
		}
		s.actor = binary.BigEndian.Uint64(buf[:])
		s.newActor = ok && !clean && !restored // an existing directory that was not closed cleanly
		s.restored = ok && restored
		if renamed {
			s.prevOwner = string(owner)
		}
		b.Set(metaActor, buf[:], nil)
	}
	if s.owner != "" && string(owner) != s.owner {
		b.Set(metaOwner, []byte(s.owner), nil)
	}
	// Until Close marks it again, the directory counts as not closed cleanly.
	if clean {
		b.Delete(metaClean, nil)
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: write identity: %w", err)
	}
	return nil
}

func (s *Store) getMeta(k []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: read %q: %w", k[1:], err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// Actor returns the node's actor id, created with the data directory.
func (s *Store) Actor() uint64 { return s.actor }

// Partitions returns Q.
func (s *Store) Partitions() int { return s.q }

func objectKey(buf []byte, p uint32, key []byte) []byte {
	buf = append(buf, objectPrefix, byte(p>>8), byte(p))
	return append(buf, key...)
}

// Get returns the object stored for key in partition p, and whether there
// is one.
func (s *Store) Get(p uint32, key []byte) (crdt.Object, bool, error) {
	obj, _, found, err := s.GetWithEncoding(p, key)
	return obj, found, err
}

// GetWithEncoding is Get that also returns the object's encoding as
// stored (nil if there is none), shared with the store's cache: read
// only. A coordinator compares it with the copies other replicas send: a
// copy encoded the same is the same object, and needs no decoding.
func (s *Store) GetWithEncoding(p uint32, key []byte) (crdt.Object, []byte, bool, error) {
	var kb [64]byte
	k := objectKey(kb[:0], p, key)
	raw, found, err := s.getEncoded(k)
	if !found || err != nil {
		return crdt.Object{}, nil, false, err
	}
	obj, _, err := decode(k, raw)
	if err != nil {
		return crdt.Object{}, nil, false, err
	}
	return obj, raw, true, nil
}

// GetEncoded is Get for a caller that sends the object on (a replica
// answering a coordinator's read): it returns the object's encoding as
// stored, without decoding it, shared with the store's cache: read only.
// Unlike Get, it does not check the encoding.
func (s *Store) GetEncoded(p uint32, key []byte) ([]byte, bool, error) {
	var kb [64]byte
	return s.getEncoded(objectKey(kb[:0], p, key))
}

// getEncoded returns the encoding stored for store key k.
func (s *Store) getEncoded(k []byte) ([]byte, bool, error) {
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.leave()
	if raw, ok := s.objs.get(k); ok {
		return raw, raw != nil, nil // nil: cached as absent
	}
	if !s.keys.mayContain(k) {
		return nil, false, nil
	}
	if s.objs == nil {
		return s.read(k)
	}
	// Fill the cache under the key's lock, so that a concurrent Update
	// cannot be overtaken by this older read.
	mu := &s.locks[stripe(k)]
	mu.Lock()
	defer mu.Unlock()
	raw, found, err := s.current(k)
	if err != nil {
		return nil, false, err
	}
	s.objs.put(k, raw) // nil when absent: the next GET is a map lookup
	return raw, found, nil
}

// current returns the encoding of store key k from the cache or pebble.
// The caller holds k's stripe lock; the bytes must not be modified.
func (s *Store) current(k []byte) ([]byte, bool, error) {
	if raw, ok := s.objs.get(k); ok {
		return raw, raw != nil, nil
	}
	if !s.keys.mayContain(k) {
		return nil, false, nil
	}
	return s.read(k)
}

// read returns a copy of what pebble holds for store key k.
func (s *Store) read(k []byte) ([]byte, bool, error) {
	// pebble's Get makes its key escape, and with it the stack buffer
	// every caller builds k in (an allocation each request, also the ones
	// the object cache answers): a copy, on this path only, keeps it there.
	v, closer, err := s.db.Get(bytes.Clone(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: get: %w", err)
	}
	raw := append([]byte(nil), v...)
	closer.Close()
	return raw, true, nil
}

func decode(k, raw []byte) (crdt.Object, bool, error) {
	obj, err := crdt.Decode(raw)
	if err != nil {
		return crdt.Object{}, false, fmt.Errorf("store: key %q: %w", string(k[3:]), err) // a copy: k stays on its caller's stack
	}
	return obj, true, nil
}

// Update runs fn on the current object for key (the zero Object and false
// if there is none) and stores what it returns, atomically with respect to
// other Updates of the key. If fn fails, nothing is written and the error is
// returned. With Options.Sync the write is durable when Update returns.
func (s *Store) Update(p uint32, key []byte, fn func(cur crdt.Object, found bool) (crdt.Object, error)) (crdt.Object, error) {
	return s.UpdateDeferred(p, key, fn, nil)
}

// UpdateDeferred is Update for a caller with other work to do while the
// write becomes durable (a coordinator sending it to the other replicas):
// with Options.Sync and a non-nil deferSync, it returns once the write is
// applied (visible to reads and later updates) and passes deferSync a wait
// function that returns once the write is durable. The caller must call
// wait exactly once and must not count the write as stored before wait
// returns nil. Without Sync, or with a nil deferSync, it is Update.
func (s *Store) UpdateDeferred(p uint32, key []byte, fn func(cur crdt.Object, found bool) (crdt.Object, error), deferSync func(wait func() error)) (crdt.Object, error) {
	return s.update(p, key, "", fn, deferSync)
}

// update is the write path of UpdateDeferred and UpdateHinted: it applies
// the write and then waits for (or defers) its fsync.
func (s *Store) update(p uint32, key []byte, target string, fn func(cur crdt.Object, found bool) (crdt.Object, error), deferSync func(wait func() error)) (crdt.Object, error) {
	next, _, b, err := s.apply(p, key, target, fn)
	if err != nil {
		return crdt.Object{}, err
	}
	return next, s.syncBatch(b, deferSync) // leaves once the batch is done with
}

// apply is the one write path of every update: it applies the write, and
// a hint for target if it is not "", under the key's stripe lock, and
// returns the batch for syncBatch or batchWait (which leave the store).
func (s *Store) apply(p uint32, key []byte, target string, fn func(cur crdt.Object, found bool) (crdt.Object, error)) (crdt.Object, []byte, *pebble.Batch, error) {
	var hk []byte
	if target != "" {
		if err := checkTarget(target); err != nil {
			return crdt.Object{}, nil, nil, err
		}
		hk = hintKey(make([]byte, 0, 5+len(target)+len(key)), target, p, key)
	}
	k := objectKey(make([]byte, 0, 3+len(key)), p, key)
	if err := s.enter(); err != nil {
		return crdt.Object{}, nil, nil, err
	}
	mu := &s.locks[stripe(k)]
	mu.Lock()
	next, enc, b, err := s.applyLocked(k, hk, target, fn)
	mu.Unlock()
	if err != nil {
		s.leave()
		return crdt.Object{}, nil, nil, err
	}
	return next, enc, b, nil
}

// applyLocked runs fn on the object at store key k and applies what it
// returns (and returns it, with its encoding, which the object cache
// shares: read only) to pebble (it is the only code that writes object keys: the key
// filter, which lets a write skip looking up a key it does not hold, counts
// on it), with the hint record hk for target if hk is not nil,
// without waiting for the fsync. The caller holds k's stripe lock (so the
// next update of k sees this one), must pass the returned batch to
// syncBatch, and must not hold the lock while doing so (so writers to other
// keys share the fsync).
func (s *Store) applyLocked(k, hk []byte, target string, fn func(cur crdt.Object, found bool) (crdt.Object, error)) (next crdt.Object, enc []byte, b *pebble.Batch, err error) {
	if hk != nil {
		var reserved bool
		if reserved, err = s.reserveNewHint(hk, target); err != nil {
			return crdt.Object{}, nil, nil, err
		}
		if reserved {
			// err is the named result: release the reservation on every
			// failure below.
			defer func() {
				if err != nil {
					s.releaseHint(target)
				}
			}()
		}
	}
	var cur crdt.Object
	raw, found, err := s.current(k)
	if err == nil && found {
		cur, _, err = decode(k, raw)
	}
	if err != nil {
		return crdt.Object{}, nil, nil, err
	}
	next, err = fn(cur, found)
	if err != nil {
		return crdt.Object{}, nil, nil, err
	}
	if !found {
		// Before the write: from now on a lookup of k searches pebble.
		// (A failed write leaves k in the filter: a false positive.)
		s.keys.add(k)
	}
	b = s.db.NewBatch()
	enc = next.Encode()
	err = b.Set(k, enc, nil)
	if err == nil && hk != nil {
		err = b.Set(hk, appendHintValue(make([]byte, 0, hintValueLen), s.hintSeq.Add(1)), nil)
	}
	if err != nil {
		b.Close()
		return crdt.Object{}, nil, nil, fmt.Errorf("store: update: %w", err)
	}
	if failed := s.failed.Load(); failed != nil { // since this call entered: a WAL write failed
		b.Close()
		return crdt.Object{}, nil, nil, *failed
	}
	err = s.applyBatch(b)
	if failed := s.failed.Load(); err == nil && failed != nil {
		// Applied, but a WAL write may have failed meanwhile (walWatchFS):
		// not acknowledged. With Sync the batch may still be in the log
		// writer's queue of syncs, so it is left to the collector, not
		// closed (closing it raced with the queue).
		if s.objs != nil {
			s.objs.remove(k)
		}
		if !s.wo.Sync {
			b.Close()
		}
		return crdt.Object{}, nil, nil, fmt.Errorf("store: update: %w", *failed)
	}
	if err != nil {
		if s.objs != nil {
			s.objs.remove(k)
		}
		b.Close()
		return crdt.Object{}, nil, nil, fmt.Errorf("store: update: %w", err)
	}
	s.written.Add(uint64(len(k) + len(enc)))
	s.objs.put(k, enc)
	return next, enc, b, nil
}

// storageErrorGrace is how long flushes or compactions may keep failing
// before the store fails.
const storageErrorGrace = 5 * time.Second

// errorRun follows a run of failures of one kind of pebble job.
type errorRun struct{ since atomic.Int64 } // monotonic ns of the run's first failure; 0: none

// persists records a job's outcome and reports whether its kind has
// been failing, with no success between, for at least grace.
func (r *errorRun) persists(failed bool, grace time.Duration) bool {
	if !failed {
		r.since.Store(0)
		return false
	}
	now := monoNow()
	r.since.CompareAndSwap(0, now)
	return now-r.since.Load() >= int64(grace)
}

// applyBatch applies b to pebble, without waiting for its fsync. Pebble
// panics when a write to its WAL fails (a full disk): the panic fails the
// store instead (fail-stop, as a failed fsync does), rather than crash the
// process in a request's goroutine with a stripe lock held.
func (s *Store) applyBatch(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(fmt.Errorf("pebble: writing the WAL: %v", r))
		}
	}()
	if s.wo.Sync {
		return s.db.ApplyNoSyncWait(b, s.wo)
	}
	return s.db.Apply(b, s.wo)
}

// syncBatch finishes a batch applied by applyLocked: with Options.Sync it
// waits for the batch's fsync, or hands that wait to deferSync if it is not
// nil. It closes the batch (or leaves that to the wait it hands over).
// The caller entered the store (enter); syncBatch leaves it when the batch
// is done with, which with deferSync is when wait returns.
func (s *Store) syncBatch(b *pebble.Batch, deferSync func(wait func() error)) error {
	wait := s.batchWait(b)
	switch {
	case wait == nil:
		return nil
	case deferSync != nil:
		deferSync(wait)
		return nil
	}
	return wait()
}

// batchWait finishes a batch applied by applyLocked without Options.Sync
// (it closes it, leaves the store and returns nil), or returns the wait for
// its fsync, which closes it and leaves the store when it returns.
func (s *Store) batchWait(b *pebble.Batch) func() error {
	if !s.wo.Sync {
		b.Close()
		s.leave()
		return nil
	}
	return func() error { // made only here: a closure that escapes costs an allocation
		err := b.SyncWait()
		b.Close()
		if err != nil {
			// The batch is in the memtable (and maybe the object cache),
			// readable, but not on disk: fail before anyone reads it.
			err = s.fail(fmt.Errorf("WAL fsync: %w", err))
		} else if failed := s.failed.Load(); failed != nil {
			// A WAL write failed (walWatchFS): the fsync may have
			// covered a write that never reached the file.
			err = *failed
		}
		s.leave()
		return err
	}
}

// Merge stores the merge of obj with what the store holds for key, as a
// replica does with an object sent by a coordinator, and returns the result.
func (s *Store) Merge(p uint32, key []byte, obj crdt.Object) (crdt.Object, error) {
	return s.Update(p, key, func(cur crdt.Object, _ bool) (crdt.Object, error) {
		return crdt.Merge(cur, obj), nil
	})
}

// Scan calls fn for every object in partition p, in key order. The key
// passed to fn is only valid during the call. Scan stops at fn's first error
// and returns it.
func (s *Store) Scan(p uint32, fn func(key []byte, obj crdt.Object) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	lo := objectKey(nil, p, nil)
	hi := objectKey(nil, p+1, nil)
	if p+1 >= 1<<16 {
		hi = []byte{objectPrefix + 1}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		obj, err := crdt.Decode(append([]byte(nil), it.Value()...))
		if err != nil {
			it.Close()
			return fmt.Errorf("store: key %q: %w", it.Key()[3:], err)
		}
		if err := fn(it.Key()[3:], obj); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// Metrics returns pebble's figures; all zero once the store is closed.
func (s *Store) Metrics() *pebble.Metrics {
	if s.enter() != nil {
		return &pebble.Metrics{}
	}
	defer s.leave()
	return s.db.Metrics()
}

// Flush writes the memtable to disk (for tests and orderly shutdowns).
func (s *Store) Flush() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.db.Flush()
}

// enter counts a call in flight, or reports false once Close has begun.
func (s *Store) enter() error {
	s.users.Add(1)
	if s.closing.Load() { // after the Add: Close either sees this call or this call sees Close
		s.leave()
		return ErrClosed
	}
	if err := s.failed.Load(); err != nil {
		s.leave()
		return *err
	}
	return nil
}

// fail puts the store in its failed state (see Options.OnFailure): every
// later call returns an error wrapping ErrFailed and cause. The first cause
// is kept and reported.
func (s *Store) fail(cause error) error {
	err := fmt.Errorf("%w: %w; refusing reads and writes until restarted", ErrFailed, cause)
	if s.failed.CompareAndSwap(nil, &err) {
		close(s.failedCh)
		if s.onFailure != nil {
			s.onFailure(err)
		}
	}
	return *s.failed.Load()
}

// Err returns why the store failed (wrapping ErrFailed), or nil.
func (s *Store) Err() error {
	if err := s.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// leave ends a call that entered; the last one out lets a waiting Close go on.
func (s *Store) leave() {
	if s.users.Add(-1) == 0 && s.closing.Load() {
		s.drainOnce.Do(func() { close(s.drained) })
	}
}

// Close marks the directory as cleanly closed (so the next Open keeps the
// actor id) and releases it. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		if s.users.Load() > 0 { // after the Store: see enter
			<-s.drained
		}
		if s.stopSync != nil {
			close(s.stopSync)
			<-s.syncDone
		}
		if s.idleStop != nil {
			close(s.idleStop)
			<-s.idleDone
		}
		var err error
		if s.Err() == nil { // a failed WAL takes no writes: pebble would treat this one's failure as fatal
			var mark []byte
			if mark, err = writeCloseMark(s.fs, s.dir); err == nil {
				err = s.db.Set(metaClean, mark, pebble.Sync)
			}
			if err == nil {
				err = s.flushForClose()
			}
		}
		s.closeErr = errors.Join(err, s.db.Close())
		s.cache.Unref()
		s.releaseFS()
	})
	return s.closeErr
}

// closeFlushTimeout bounds how long Close waits for its flush.
const closeFlushTimeout = 30 * time.Second

// flushForClose writes the memtables to tables, so that a cleanly closed
// directory needs no write-ahead log to hold its data: pebble replays the
// newest log up to its first bad record (taking a torn tail for a crash),
// so damage to the log of a cleanly stopped node silently dropped every
// write after it, and the clean mark with them. It gives up, and Close
// goes on, when the store fails (a flush failing for good on a full disk)
// or after closeFlushTimeout.
func (s *Store) flushForClose() error {
	done, err := s.db.AsyncFlush()
	if err != nil {
		return fmt.Errorf("store: flush before close: %w", err)
	}
	t := time.NewTimer(closeFlushTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-s.failedCh:
		return nil // Close reports the failure through Err
	case <-t.C:
		return fmt.Errorf("store: flush before close: not done after %v; the write-ahead log keeps the data", closeFlushTimeout)
	}
}

// FsyncMode reports how the store's files are synced: "aio" (Linux AIO:
// a sync parks its goroutine and leaves its thread to others; one the
// kernel refuses is the system call, counted in rumor_store_file_syncs_total)
// or "syscall" (the blocking system call).
func (s *Store) FsyncMode() string {
	if aio, _, _ := fsyncStats(s.fs); aio {
		return "aio"
	}
	return "syscall"
}

// ReplacedActor reports whether Open gave this directory a new actor id
// because it had not been closed cleanly.
func (s *Store) ReplacedActor() bool { return s.newActor }

// RestoredCopy reports whether Open gave this directory a new actor id
// because it is a copy of the directory the node last closed (a backup
// restored), not that directory itself (see closeMarkName).
func (s *Store) RestoredCopy() bool { return s.restored }

// PreviousOwner is the other node the directory belonged to when it was
// opened under a new name (and so with a new actor id), or "".
func (s *Store) PreviousOwner() string { return s.prevOwner }

// stripe hashes a store key to its lock (FNV-1a).
func stripe(k []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range k {
		h ^= uint32(c)
		h *= 16777619
	}
	return h & (lockStripes - 1)
}

// pebbleLogger passes pebble's messages on. Its errors are logged at
// most once a second, with the count of those left out: a background
// error that repeats (no file descriptor left, a full disk) came tens of
// thousands of times a second and filled the log.
type pebbleLogger struct {
	l      *slog.Logger
	errors every.Second
}

func (p *pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p *pebbleLogger) Errorf(format string, args ...any) {
	ok, refused := p.errors.Allow()
	if !ok {
		return
	}
	if refused > 0 {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble", "errors_not_logged_since_last", refused)
		return
	}
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// processStart anchors monoNow.
var processStart = time.Now()

// monoNow is nanoseconds on the monotonic clock since the process started,
// never 0 (which the callers keep for "never").
func monoNow() int64 { return int64(time.Since(processStart)) + 1 }

func (p *pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
