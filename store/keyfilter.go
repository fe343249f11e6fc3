package store

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// keyFilter is a Bloom filter of the object keys the store holds, so that
// a write to a new key (and a read of a missing one) does not search pebble
// for it. Pebble, unlike RocksDB, has no filter over its memtables: a
// lookup of an absent key walks the memtable skiplist, cache miss after
// cache miss, then consults every sstable's filter. In process, a write to
// a new key spent 40% of its time there.
//
// It may say a key is there when it is not (about 1% of absent keys), but
// never the reverse, which is what makes skipping the read safe: a write
// that took a held key for new would replace its object with one that does
// not include it. So every key pebble holds is in the filter:
//
//   - Open starts a scan of every object key in the background; the filter
//     answers "absent" only once that scan is complete.
//   - applyLocked, the one path that writes object keys, adds a key it
//     found absent before it applies the write, under the key's stripe
//     lock; readers consult the filter under the same lock. Keys the scan
//     has not reached yet are found by pebble (the filter is not complete),
//     and the scan adds them.
//   - Object keys are never deleted (a delete writes a tombstone), so the
//     filter never has to forget one.
//
// It starts at the size Open estimates from pebble's entry counts
// (estimateKeys) and grows by layers: when the newest is full a layer twice the size of
// all before it is added, and a key is looked up in every layer. Layers
// are never removed or cleared while the store is open.
type keyFilter struct {
	seed     maphash.Seed
	complete atomic.Bool
	layers   atomic.Pointer[[]*filterLayer]
	growMu   sync.Mutex
}

// filterLayer is a blocked Bloom filter: each key sets filterProbes bits in
// one 512-bit block (a cache line), at 10 bits of memory per key.
type filterLayer struct {
	blocks   []filterBlock
	capacity int64
	keys     atomic.Int64
}

type filterBlock [8]atomic.Uint64

const (
	filterBitsPerKey = 10
	filterProbes     = 6
	minFilterKeys    = 1 << 16
)

func newKeyFilter(capacity int64) *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	layers := []*filterLayer{newFilterLayer(max(capacity, minFilterKeys))}
	f.layers.Store(&layers)
	return f
}

func newFilterLayer(capacity int64) *filterLayer {
	n := (capacity*filterBitsPerKey + 511) / 512
	return &filterLayer{blocks: make([]filterBlock, n), capacity: capacity}
}

// block returns the block of a layer that hash h selects, and the bit
// positions in it: filterProbes 9-bit numbers, from a second mix of h.
func (l *filterLayer) block(h uint64) (*filterBlock, uint64) {
	i, _ := bits.Mul64(h, uint64(len(l.blocks)))
	m := (h ^ h>>33) * 0xff51afd7ed558ccd
	return &l.blocks[i], m ^ m>>29
}

func (l *filterLayer) set(h uint64) {
	b, pos := l.block(h)
	for range filterProbes {
		p := pos & 511
		b[p>>6].Or(1 << (p & 63))
		pos >>= 9
	}
}

func (l *filterLayer) has(h uint64) bool {
	b, pos := l.block(h)
	for range filterProbes {
		p := pos & 511
		if b[p>>6].Load()&(1<<(p&63)) == 0 {
			return false
		}
		pos >>= 9
	}
	return true
}

// add records key. It may grow the filter.
func (f *keyFilter) add(key []byte) {
	layers := *f.layers.Load()
	l := layers[len(layers)-1]
	l.set(maphash.Bytes(f.seed, key))
	if l.keys.Add(1) == l.capacity {
		f.grow(l)
	}
}

// grow adds a layer after full, if it is still the newest.
func (f *keyFilter) grow(full *filterLayer) {
	f.growMu.Lock()
	defer f.growMu.Unlock()
	layers := *f.layers.Load()
	if layers[len(layers)-1] != full {
		return
	}
	var total int64
	for _, l := range layers {
		total += l.capacity
	}
	next := append(append([]*filterLayer(nil), layers...), newFilterLayer(2*total))
	f.layers.Store(&next)
}

// mayContain reports whether key may be held: false only if it certainly
// is not, and only once the opening scan is complete.
func (f *keyFilter) mayContain(key []byte) bool {
	if !f.complete.Load() {
		return true
	}
	h := maphash.Bytes(f.seed, key)
	for _, l := range *f.layers.Load() {
		if l.has(h) {
			return true
		}
	}
	return false
}

// bytes is the memory the filter's bits take.
func (f *keyFilter) bytes() int64 {
	var n int64
	for _, l := range *f.layers.Load() {
		n += int64(len(l.blocks)) * 64
	}
	return n
}
