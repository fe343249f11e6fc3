package testutil

import (
	"errors"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// ErrInjectedEIO is the error WALSyncFails injects.
var ErrInjectedEIO = errors.New("injected EIO")

// WALSyncFails is an errorfs injector (errorfs.Wrap(fs, WALSyncFails{&fail})):
// once Fail is set, every sync of a write-ahead log (a .log file) fails
// with ErrInjectedEIO, as a disk returning EIO does. Writes still succeed:
// the data is in the file's pages, not known to be on the disk.
type WALSyncFails struct{ Fail *atomic.Bool }

func (w WALSyncFails) String() string { return "WALSyncFails" }

// MaybeError implements errorfs.Injector.
func (w WALSyncFails) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if w.Fail.Load() && strings.HasSuffix(op.Path, ".log") {
			return ErrInjectedEIO
		}
	}
	return nil
}
