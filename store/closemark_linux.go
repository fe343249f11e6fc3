package store

import (
	"encoding/binary"
	"syscall"
)

// fileIdentity is a file's inode number and change time (seconds and
// nanoseconds), from what os.Stat's Sys gives; nil for anything else.
func fileIdentity(sys any) []byte {
	st, ok := sys.(*syscall.Stat_t)
	if !ok {
		return nil
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 24), st.Ino)
	b = binary.BigEndian.AppendUint64(b, uint64(st.Ctim.Sec))
	return binary.BigEndian.AppendUint64(b, uint64(st.Ctim.Nsec))
}
