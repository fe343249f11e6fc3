package store

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rumor-kv/rumor/crdt"
)

// BenchmarkUpdate measures one register write (read, merge, encode, apply)
// from parallel writers, with and without fsync and the object cache: to
// keys of a 100,000-key space (most of them held after the first moments,
// as under redis-benchmark -r 100000), and to keys never written before.
func BenchmarkUpdate(b *testing.B) {
	for _, keys := range []string{"100k", "new"} {
		for _, sync := range []bool{false, true} {
			for _, cache := range []int64{-1, 16 << 20} {
				b.Run(fmt.Sprintf("keys=%s/sync=%v/cache=%v", keys, sync, cache > 0), func(b *testing.B) {
					s, err := Open(Options{Dir: b.TempDir(), Partitions: 4096, Sync: sync, ObjectCacheSize: cache})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					val := make([]byte, 3)
					b.ReportAllocs()
					b.SetParallelism(benchParallelism)
					b.RunParallel(func(pb *testing.PB) {
						r := rand.New(rand.NewPCG(rand.Uint64(), 1))
						for pb.Next() {
							i := r.Uint64N(1 << 62)
							if keys == "100k" {
								i %= 100000
							}
							k := []byte(fmt.Sprintf("key:%012d", i))
							_, err := s.Update(uint32(i%4096), k, func(cur crdt.Object, _ bool) (crdt.Object, error) {
								cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, val, false, 1)
								return cur, nil
							})
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		}
	}
}

// BenchmarkGet measures a read of an existing key, and of a key the store
// does not hold (half the keys of the same key space).
func BenchmarkGet(b *testing.B) {
	for _, missing := range []bool{false, true} {
		for _, cache := range []int64{-1, 16 << 20} {
			b.Run(fmt.Sprintf("missing=%v/cache=%v", missing, cache > 0), func(b *testing.B) {
				s, err := Open(Options{Dir: b.TempDir(), Partitions: 16, ObjectCacheSize: cache})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				const keys = 100000
				for i := 0; i < keys; i += 2 { // even keys exist, odd ones do not
					s.Update(uint32(i%16), []byte(fmt.Sprintf("key:%012d", i)), func(cur crdt.Object, _ bool) (crdt.Object, error) {
						cur.Reg = cur.Reg.Update(s.Actor(), nil, []byte("xxx"), false, 1)
						return cur, nil
					})
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(rand.Uint64(), 2))
					for pb.Next() {
						i := r.IntN(keys/2) * 2
						if missing {
							i++
						}
						_, ok, err := s.Get(uint32(i%16), []byte(fmt.Sprintf("key:%012d", i)))
						if ok == missing || err != nil {
							b.Errorf("key %d: found %v, err %v", i, ok, err)
							return
						}
					}
				})
			})
		}
	}
}

// benchParallelism is goroutines per CPU in BenchmarkUpdate.
var benchParallelism = 16

// BenchmarkSyncedUpdatesOneThread measures synced writes from 32 writers
// with GOMAXPROCS=1 (rumor node --procs 1), with the store's fsyncs as it
// makes them (fs=aio on Linux: the syncing goroutine parks) and with the
// plain blocking system call (fs=syscall: the syncing goroutine keeps the
// only P for the whole fsync). Compare the two in one run: the disk's
// fsync time moves between runs and machines.
func BenchmarkSyncedUpdatesOneThread(b *testing.B) {
	for _, mode := range []string{"aio", "syscall"} {
		b.Run("fs="+mode, func(b *testing.B) {
			o := Options{Dir: b.TempDir(), Partitions: 16, Sync: true}
			if mode == "syscall" {
				o.FS = vfs.Default // a file system given is left alone
			}
			s, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if got := s.FsyncMode(); got != mode && runtime.GOOS == "linux" {
				b.Skipf("the store syncs with %s here", got)
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			val := []byte("VXK")
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 2))
				for pb.Next() {
					i := r.Uint64N(100000)
					_, err := s.Update(uint32(i%16), fmt.Appendf(nil, "key:%012d", i), func(cur crdt.Object, _ bool) (crdt.Object, error) {
						cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, val, false, 1)
						return cur, nil
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
