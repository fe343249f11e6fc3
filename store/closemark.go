package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// closeMarkName is the file Close rewrites just before it marks the
// directory as cleanly closed, recording the file's identity (its inode
// and the time it last changed, which nothing but the file system sets)
// with the mark. A copy of the directory (a backup restored with tar,
// cp or rsync) has a new file in its place, so Open tells a restored copy
// from the directory this node closed: restored, the node would write
// again under the actor id the copy was taken with, handing out once more
// the dots (and counter totals) it gave the writes made since, which the
// other replicas have seen, and would drop as already superseded. A
// restored copy gets a new actor id, as an unclean shutdown does.
//
// A snapshot rolled back by the file system or the volume (LVM, ZFS,
// btrfs, a stopped VM's disk) keeps the file's identity and is not seen:
// the README says to start such a copy under a new --name.
const closeMarkName = "CLOSED"

// writeCloseMark rewrites dir's close mark and returns its identity, nil
// where the file system gives none (a test's in-memory one).
func writeCloseMark(fs vfs.FS, dir string) ([]byte, error) {
	path := fs.PathJoin(dir, closeMarkName)
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("store: close mark: %w", err)
	}
	// New contents each time, so the file changes (its change time with it).
	_, err = f.Write(binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store: close mark: %w", err)
	}
	return closeMarkIdentity(fs, dir), nil
}

// closeMarkIdentity returns the identity of dir's close mark: nil if
// there is none, or the file system gives none.
func closeMarkIdentity(fs vfs.FS, dir string) []byte {
	fi, err := fs.Stat(fs.PathJoin(dir, closeMarkName))
	if err != nil {
		return nil
	}
	return fileIdentity(fi.Sys())
}
