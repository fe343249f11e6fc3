package store

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// objectCache keeps the encoded objects of recently used keys in memory, in
// front of pebble: a GET of a hot key is a map lookup instead of a search
// of pebble's memtable skiplist and sstables, and a write's read of the
// current object is too. (Pebble has a block cache but, unlike RocksDB, no
// row cache; profiles of redis-benchmark GET showed about 40% of the CPU in
// the memtable search.)
//
// Consistency: entries are only inserted or replaced while the key's stripe
// lock is held, in the same order as the writes to pebble, so the cache can
// never hold an older object than pebble. Reads of a cached key take only
// the shard's lock. A key whose hash collides with another's may push the
// other's entry out, under another stripe lock: forgetting an entry is
// always safe, and an entry answers only for its own key.
//
// The cache also remembers keys that pebble does not hold (an entry with a
// nil value), filled the same way under the stripe lock, for the missing
// keys the key filter cannot rule out (its false positives, and every key
// until its opening scan is done): a GET of such a key, which otherwise
// searches every memtable and consults the sstables' bloom filters, costs
// one map lookup the second time. A write replaces the entry like any
// other.
//
// Eviction is random (Go's map iteration order): past its byte budget a
// shard drops entries until it is under it. For the skewed and uniform
// workloads a key-value store sees, random eviction's hit ratio is close
// to LRU's, with no per-hit bookkeeping.
type objectCache struct {
	shards    [cacheShards]cacheShard
	maxBytes  int64 // per shard
	seed      maphash.Seed
	hash      func(seed maphash.Seed, k []byte) uint64 // nil: maphash.Bytes; a test's collisions
	hits      atomic.Int64
	misses    atomic.Int64
	evictions atomic.Int64
}

const (
	cacheShards   = 64
	entryOverhead = 48 // map slot, slice header, entry header
)

// A cache entry is one allocation: a flag byte (1: pebble holds no object
// for the key), the key's length (uvarint), the key, then the encoding.
// The map is keyed by the key's hash, so that a lookup compares a number
// in the map's slot and then reads one allocation, where a map keyed by
// the key string reads the slot, the string's bytes and the value's, each
// most likely a miss of the CPU's caches; the key in the entry tells a
// hash collision, which only costs the colliding key its place.
type cacheShard struct {
	mu    sync.Mutex
	m     map[uint64][]byte
	bytes int64
}

func newObjectCache(maxBytes int64) *objectCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &objectCache{maxBytes: max(maxBytes/cacheShards, 1), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[uint64][]byte{}
	}
	return c
}

func (c *objectCache) locate(k []byte) (*cacheShard, uint64) {
	var h uint64
	if c.hash == nil {
		h = maphash.Bytes(c.seed, k)
	} else {
		// A call through a func value makes its arguments escape: a
		// copy keeps the callers' stack-built keys on the stack.
		h = c.hash(c.seed, bytes.Clone(k))
	}
	return &c.shards[h>>(64-6)], h // cacheShards = 1<<6
}

// entryValue returns what e caches for k, and whether e is k's entry.
func entryValue(e, k []byte) ([]byte, bool) {
	n, w := binary.Uvarint(e[1:])
	key := e[1+w:]
	if uint64(len(key)) < n || string(key[:n]) != string(k) {
		return nil, false
	}
	if e[0] == 1 {
		return nil, true
	}
	return key[n:], true
}

// get returns the cached encoding of store key k, and whether k is cached
// at all: (nil, true) means pebble holds no object for k. The bytes are
// shared and must not be modified.
func (c *objectCache) get(k []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	sh, h := c.locate(k)
	sh.mu.Lock()
	e, ok := sh.m[h]
	sh.mu.Unlock()
	var v []byte
	if ok {
		v, ok = entryValue(e, k)
	}
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

// put caches v for k (copying it); a nil v records that pebble holds no
// object for k (encodings are never empty). The caller holds k's stripe
// lock.
func (c *objectCache) put(k []byte, v []byte) {
	if c == nil {
		return
	}
	size := int64(len(k) + len(v) + entryOverhead)
	if size > c.maxBytes/4 {
		c.remove(k) // too big to be worth a slot; drop any older copy
		return
	}
	e := make([]byte, 1, 1+binary.MaxVarintLen64+len(k)+len(v))
	if v == nil {
		e[0] = 1
	}
	e = binary.AppendUvarint(e, uint64(len(k)))
	e = append(append(e, k...), v...)
	sh, h := c.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[h]; ok {
		sh.bytes -= int64(len(old) + entryOverhead)
	}
	sh.m[h] = e
	sh.bytes += int64(len(e) + entryOverhead)
	if sh.bytes <= c.maxBytes {
		return // starting a map iteration is not free: only when over budget
	}
	// Evict down to a little under the budget, so that one iteration's
	// start serves the next few dozen puts too: a full cache evicting for
	// each put spent a fifth of a put (with a lookup) starting iterations
	// (go test -bench of a get and a put of a new key each: 415 ns against
	// about 300 ns).
	low := c.maxBytes - c.maxBytes/evictSlack
	for victim, old := range sh.m {
		if sh.bytes <= low {
			break
		}
		if victim == h {
			continue
		}
		delete(sh.m, victim)
		sh.bytes -= int64(len(old) + entryOverhead)
		c.evictions.Add(1)
	}
}

// evictSlack: a full shard evicts down to 1/evictSlack under its budget.
const evictSlack = 32

func (c *objectCache) remove(k []byte) {
	sh, h := c.locate(k)
	sh.mu.Lock()
	if old, ok := sh.m[h]; ok {
		delete(sh.m, h) // whosever entry it is: forgetting one is always safe
		sh.bytes -= int64(len(old) + entryOverhead)
	}
	sh.mu.Unlock()
}

func (c *objectCache) size() (bytes, entries int64) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		bytes += sh.bytes
		entries += int64(len(sh.m))
		sh.mu.Unlock()
	}
	return bytes, entries
}
