//go:build !linux

package store

import "github.com/cockroachdb/pebble/v2/vfs"

// syncingFS returns the file system pebble should use for the disk: away
// from Linux, syncs are the plain system calls (see fsync_linux.go).
func syncingFS(fs vfs.FS) (vfs.FS, func()) {
	if fs != nil {
		return fs, func() {}
	}
	return vfs.Default, func() {}
}

// fsyncStats: every sync is the system call here, uncounted.
func fsyncStats(vfs.FS) (aio bool, taken, fellBack uint64) { return false, 0, 0 }
