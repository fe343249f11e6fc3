package store

import (
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
// the shard's lock.
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
	hits      atomic.Int64
	misses    atomic.Int64
	evictions atomic.Int64
}

const (
	cacheShards   = 64
	entryOverhead = 48 // map slot, string and slice headers
)

type cacheShard struct {
	mu    sync.Mutex
	m     map[string][]byte
	bytes int64
}

func newObjectCache(maxBytes int64) *objectCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &objectCache{maxBytes: max(maxBytes/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = map[string][]byte{}
	}
	return c
}

func (c *objectCache) shard(k []byte) *cacheShard { return &c.shards[stripe(k)%cacheShards] }

// get returns the cached encoding of store key k, and whether k is cached
// at all: (nil, true) means pebble holds no object for k. The bytes are
// shared and must not be modified.
func (c *objectCache) get(k []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	sh := c.shard(k)
	sh.mu.Lock()
	v, ok := sh.m[string(k)]
	sh.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

// put caches v (which the cache now owns) for k; a nil v records that
// pebble holds no object for k (encodings are never empty). The caller
// holds k's stripe lock.
func (c *objectCache) put(k []byte, v []byte) {
	if c == nil {
		return
	}
	size := int64(len(k) + len(v) + entryOverhead)
	if size > c.maxBytes/4 {
		c.remove(k) // too big to be worth a slot; drop any older copy
		return
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[string(k)]; ok {
		sh.bytes -= int64(len(k) + len(old) + entryOverhead)
	}
	sh.m[string(k)] = v
	sh.bytes += size
	if sh.bytes <= c.maxBytes {
		return // starting a map iteration is not free: only when over budget
	}
	for victim, val := range sh.m {
		if sh.bytes <= c.maxBytes {
			break
		}
		if victim == string(k) {
			continue
		}
		delete(sh.m, victim)
		sh.bytes -= int64(len(victim) + len(val) + entryOverhead)
		c.evictions.Add(1)
	}
}

func (c *objectCache) remove(k []byte) {
	sh := c.shard(k)
	sh.mu.Lock()
	if old, ok := sh.m[string(k)]; ok {
		delete(sh.m, string(k))
		sh.bytes -= int64(len(k) + len(old) + entryOverhead)
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
