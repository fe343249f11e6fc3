package store

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// TestObjectCacheTellsCollisions: keys whose hashes are equal push each
// other out of the cache, and a lookup never answers with another key's
// entry, including a key that the other one starts with.
func TestObjectCacheTellsCollisions(t *testing.T) {
	c := newObjectCache(1 << 20)
	c.hash = func(maphash.Seed, []byte) uint64 { return 42 }
	check := func(k, want string, cached bool) {
		t.Helper()
		v, ok := c.get([]byte(k))
		if ok != cached || (cached && want == "<absent>" && v != nil) || (cached && want != "<absent>" && string(v) != want) {
			t.Fatalf("get(%q) = %q, %v; want %q, %v", k, v, ok, want, cached)
		}
	}
	c.put([]byte("abc"), []byte("v1"))
	check("abc", "v1", true)
	check("ab", "", false)   // a prefix of the cached key
	check("abcd", "", false) // the cached key is a prefix of it
	c.put([]byte("ab"), []byte("v2"))
	check("ab", "v2", true)
	check("abc", "", false) // pushed out
	c.put([]byte("x"), nil)
	check("x", "<absent>", true)
	check("ab", "", false)
	if b, n := c.size(); n != 1 || b != int64(1+1+1+entryOverhead) {
		t.Fatalf("size %d bytes, %d entries; want one entry of %d bytes", b, n, 1+1+1+entryOverhead)
	}
	c.remove([]byte("ab")) // not x's entry, but its hash: forgetting x is safe
	check("x", "", false)
	if b, n := c.size(); n != 0 || b != 0 {
		t.Fatalf("size %d bytes, %d entries after the remove; want none", b, n)
	}
}

// TestObjectCacheEntries: an entry round-trips keys and values of every
// length class of its header, and the empty key.
func TestObjectCacheEntries(t *testing.T) {
	c := newObjectCache(64 << 20)
	for _, n := range []int{0, 1, 127, 128, 300, 16383, 16384, 20000} {
		k := make([]byte, n)
		for i := range k {
			k[i] = byte(i * 7)
		}
		v := append([]byte("value-"), k...)
		c.put(k, v)
		got, ok := c.get(k)
		if !ok || string(got) != string(v) {
			t.Fatalf("key of %d bytes: got %d bytes, %v", n, len(got), ok)
		}
	}
}

// A read the object cache answers allocates nothing: the store key is
// built on the caller's stack (an allocation a request, before the cache
// and pebble's Get stopped making it escape), and the cached encoding is
// shared, not copied.
func TestCachedReadsDoNotAllocate(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented builds allocate differently")
	}
	s := open(t, Options{})
	set(t, s, 3, "greeting", "hello")
	if raw, ok, err := s.GetEncoded(3, []byte("greeting")); err != nil || !ok || len(raw) == 0 {
		t.Fatalf("GetEncoded = %d bytes, %v, %v", len(raw), ok, err)
	}
	key := []byte("greeting")
	if n := testing.AllocsPerRun(100, func() { s.GetEncoded(3, key) }); n != 0 {
		t.Errorf("a cached GetEncoded allocates %v times, want 0", n)
	}
	missing := []byte("nobody")
	if n := testing.AllocsPerRun(100, func() { s.GetEncoded(3, missing) }); n != 0 {
		t.Errorf("a GetEncoded of a key the store does not hold allocates %v times, want 0", n)
	}
}

// A full shard evicts down to a little under its budget, never past the
// entry just put, and no shard ever ends a put over its budget.
func TestObjectCacheStaysWithinItsBudget(t *testing.T) {
	c := newObjectCache(cacheShards * 4096)
	low := c.maxBytes - c.maxBytes/evictSlack
	val := make([]byte, 100)
	for i := range 20000 {
		k := []byte(fmt.Sprintf("key:%08d", i))
		sh, _ := c.locate(k)
		before := c.evictions.Load()
		c.put(k, val)
		sh.mu.Lock()
		bytes := sh.bytes
		sh.mu.Unlock()
		if bytes > c.maxBytes {
			t.Fatalf("put %d: shard holds %d bytes, over its budget of %d", i, bytes, c.maxBytes)
		}
		if c.evictions.Load() > before && bytes > low {
			t.Fatalf("put %d evicted down to %d bytes, want at most %d", i, bytes, low)
		}
		if got, ok := c.get(k); !ok || len(got) != len(val) {
			t.Fatalf("put %d: the entry just put is gone", i)
		}
	}
	if c.evictions.Load() == 0 {
		t.Fatal("20,000 entries in a 256 KiB cache evicted nothing")
	}
	if bytes, _ := c.size(); bytes > cacheShards*c.maxBytes {
		t.Fatalf("cache holds %d bytes", bytes)
	}
}
