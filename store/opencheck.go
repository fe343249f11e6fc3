package store

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Guards against opening a damaged directory as an empty one. Pebble finds
// its database through a marker file (marker.manifest.*) naming the
// current MANIFEST, and reads the MANIFEST up to its first bad record (a
// torn tail after a crash). A directory whose marker was lost (a copy that
// skipped empty files) opened as a new database, and one whose MANIFEST
// was cut short opened without the tables listed after the cut; either way
// pebble then deleted the tables it did not know as obsolete, the node
// started without a word, and acknowledged writes were gone for good.
// Now:
//   - a directory with pebble's tables, logs or manifests but no marker is
//     refused before pebble opens it (checkMarker);
//   - while the store opens, pebble's deletions of tables, logs and
//     manifests are held (holdRemovesFS), and carried out only once the
//     store found its own records (the actor id, written when the
//     directory was created): a database that lost them while tables were
//     to be deleted is refused, and the tables stay on disk.

// checkMarker refuses dir if it holds pebble's data (tables, or logs with
// something in them) but no database (pebble.Peek finds no manifest
// marker). A MANIFEST alone is what a crash during a node's first start
// leaves (pebble writes it before the marker): nothing was stored yet,
// and the directory opens as new.
func checkMarker(dir string, fsys vfs.FS) error {
	desc, err := pebble.Peek(dir, fsys)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a new directory
		}
		return fmt.Errorf("store: open %s: %w", dir, err)
	}
	if desc.Exists {
		return nil
	}
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", dir, err)
	}
	for _, name := range names {
		if pebbleDataFile(name) && !strings.HasPrefix(name, "MANIFEST-") && !emptyFile(fsys, fsys.PathJoin(dir, name)) {
			return fmt.Errorf("store: open %s: the directory holds pebble's files (%s) but no manifest marker (marker.manifest.*), which names the current MANIFEST: "+
				"opened, it would be an empty database and its files deleted. Restore the directory, or its marker, from a backup; to start this node empty instead, move the directory away", dir, name)
		}
	}
	return nil
}

func emptyFile(fsys vfs.FS, path string) bool {
	fi, err := fsys.Stat(path)
	return err == nil && fi.Size() == 0
}

// pebbleDataFile reports whether a file name is one of pebble's tables,
// write-ahead logs, blob files or manifests.
func pebbleDataFile(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".log") ||
		strings.HasSuffix(name, ".blob") || strings.HasPrefix(name, "MANIFEST-")
}

// holdRemovesFS holds back the removal of pebble's data files (see
// pebbleDataFile) until release; pebble is told they are gone.
type holdRemovesFS struct {
	vfs.FS
	mu      sync.Mutex
	holding bool
	held    []string
}

func newHoldRemovesFS(fsys vfs.FS) *holdRemovesFS {
	return &holdRemovesFS{FS: fsys, holding: true}
}

func (h *holdRemovesFS) Remove(name string) error {
	if pebbleDataFile(h.FS.PathBase(name)) {
		h.mu.Lock()
		if h.holding {
			h.held = append(h.held, name)
			h.mu.Unlock()
			return nil
		}
		h.mu.Unlock()
	}
	return h.FS.Remove(name)
}

// unknownTables lists the tables in dir that db does not hold: on disk,
// or on their way out (held). Pebble deletes them as obsolete, as it
// opens or soon after.
func unknownTables(db *pebble.DB, h *holdRemovesFS, dir string) ([]string, error) {
	names, err := h.FS.List(dir)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	for _, name := range h.held {
		names = append(names, h.FS.PathBase(name))
	}
	h.mu.Unlock()
	levels, err := db.SSTables()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, tables := range levels {
		for _, t := range tables {
			live[fmt.Sprintf("%s.sst", t.FileNum)] = true
		}
	}
	var out []string
	for _, name := range names {
		if strings.HasSuffix(name, ".sst") && !live[name] && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// release removes the held files and stops holding.
func (h *holdRemovesFS) release() error {
	h.mu.Lock()
	held := h.held
	h.held, h.holding = nil, false
	h.mu.Unlock()
	var errs []error
	for _, name := range held {
		if err := h.FS.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
