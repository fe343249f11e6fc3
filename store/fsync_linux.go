package store

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// A goroutine in a blocking system call keeps its P (the right to run Go
// code) until the runtime's monitor notices, tens of microseconds to
// milliseconds later. An fsync waits on the disk for hundreds of
// microseconds, so a node with few Ps (rumor node --procs 1, or each node
// of a local cluster) stalled all of its other goroutines for most of every
// WAL fsync: with --sync and one P, a node served 8,000 SETs/s instead of
// 47,000. asyncFS submits the fsyncs of the files pebble writes through
// Linux AIO (IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC: the same vfs_fsync as
// fsync(2) and fdatasync(2), run by a kernel worker) and parks the
// goroutine until the completion arrives on an eventfd the Go netpoller
// watches, so the P runs other goroutines meanwhile. A sync the kernel
// does not take (an old kernel, a file system without fsync) is done with
// the plain system call; a sync the kernel took and failed returns its
// error, never retried (a failed fsync may have dropped the dirty pages).

const (
	iocbCmdFsync   = 2
	iocbCmdFdsync  = 3
	iocbFlagResfd  = 1
	aioQueueLength = 128
)

// iocb is struct iocb of linux/aio_abi.h (little-endian: aio_key first).
type iocb struct {
	data     uint64
	key      uint32
	rwFlags  int32
	opcode   uint16
	reqprio  int16
	fildes   uint32
	buf      uint64
	nbytes   uint64
	offset   int64
	reserved uint64
	flags    uint32
	resfd    uint32
}

// ioEvent is struct io_event.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

// aioSyncer submits fsyncs and hands each completion to its waiter.
type aioSyncer struct {
	ctx      uintptr  // aio_context_t
	efd      int      // the eventfd completions signal
	ev       *os.File // efd, read through the netpoller
	reaps    chan struct{}
	taken    atomic.Uint64 // syncs the kernel completed (err or not)
	fellBack atomic.Uint64 // syncs done with the system call instead

	mu       sync.Mutex
	waiters  map[uint64]chan error
	next     uint64
	closed   bool           // plain syncs from now on
	inFlight sync.WaitGroup // syncs submitted and not yet answered
}

// newAIOSyncer returns nil if this kernel cannot do it; syncs are then
// plain system calls.
func newAIOSyncer() *aioSyncer {
	a := &aioSyncer{waiters: map[uint64]chan error{}, reaps: make(chan struct{})}
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, aioQueueLength, uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		return nil
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
		return nil
	}
	// os.NewFile registers a non-blocking descriptor with the netpoller.
	// (Its Fd method would make it blocking again: keep the number.)
	a.efd, a.ev = efd, os.NewFile(uintptr(efd), "aio-eventfd")
	go a.reap()
	return a
}

// sync fsyncs (fdatasyncs if data) fd. done is false if the kernel did
// not take the request: the caller then syncs with the system call.
func (a *aioSyncer) sync(fd uintptr, data bool) (err error, done bool) {
	ch := make(chan error, 1)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, false
	}
	id := a.next
	a.next++
	a.waiters[id] = ch
	a.inFlight.Add(1)
	a.mu.Unlock()
	defer a.inFlight.Done()

	cb := &iocb{data: id, opcode: iocbCmdFsync, fildes: uint32(fd), flags: iocbFlagResfd, resfd: uint32(a.efd)}
	if data {
		cb.opcode = iocbCmdFdsync
	}
	cbs := [1]*iocb{cb}
	n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
	runtime.KeepAlive(cb)
	if e != 0 || n != 1 { // not submitted
		a.mu.Lock()
		delete(a.waiters, id)
		a.mu.Unlock()
		return nil, false
	}
	return <-ch, true
}

// reap reads the eventfd (parked in the netpoller until a completion) and
// hands every completed event to its waiter, until close.
func (a *aioSyncer) reap() {
	defer close(a.reaps)
	var buf [8]byte
	var events [aioQueueLength]ioEvent
	var zero unix.Timespec
	for {
		if _, err := a.ev.Read(buf[:]); err != nil {
			return // closed
		}
		for {
			n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 0, aioQueueLength,
				uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&zero)), 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 || n == 0 {
				break
			}
			for _, ev := range events[:n] {
				var err error
				if ev.res < 0 {
					err = &os.SyscallError{Syscall: "aio fsync", Err: unix.Errno(-ev.res)}
				}
				a.mu.Lock()
				ch := a.waiters[ev.data]
				delete(a.waiters, ev.data)
				a.mu.Unlock()
				a.taken.Add(1)
				if ch != nil {
					ch <- err
				}
			}
			if n < aioQueueLength {
				break
			}
		}
	}
}

// close releases the context. It is called once the DB is closed; a sync
// that comes later all the same is a plain system call, and one in flight
// is answered before the reaper stops.
func (a *aioSyncer) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.inFlight.Wait()
	a.ev.Close()
	<-a.reaps
	unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
}

// asyncFS opens files whose syncs go through a.
type asyncFS struct {
	vfs.FS
	a *aioSyncer
}

func (fs asyncFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return asyncFile{File: f, a: fs.a}, nil
}

func (fs asyncFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, cat))
}

func (fs asyncFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, cat))
}

func (fs asyncFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, cat, opts...))
}

func (fs asyncFS) OpenDir(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenDir(name))
}

// Unwrap lets pebble see the file system underneath.
func (fs asyncFS) Unwrap() vfs.FS { return fs.FS }

type asyncFile struct {
	vfs.File
	a *aioSyncer
}

func (f asyncFile) Sync() error {
	if err, done := f.a.sync(f.Fd(), false); done {
		return err
	}
	f.a.fellBack.Add(1)
	return f.File.Sync()
}

func (f asyncFile) SyncData() error {
	if err, done := f.a.sync(f.Fd(), true); done {
		return err
	}
	f.a.fellBack.Add(1)
	return f.File.SyncData()
}

// syncingFS returns the file system pebble should use for the disk, and
// the function that releases what it holds, to call after the DB closes.
func syncingFS(fs vfs.FS) (vfs.FS, func()) {
	if fs != nil {
		return fs, func() {} // a test's file system: leave it alone
	}
	a := newAIOSyncer()
	if a == nil {
		return vfs.Default, func() {}
	}
	return asyncFS{FS: vfs.Default, a: a}, a.close
}

// fsyncStats reports whether the store's file syncs go through AIO, and
// how many the kernel completed that way and how many it refused (done
// with the system call instead).
func fsyncStats(fs vfs.FS) (aio bool, taken, fellBack uint64) {
	afs, ok := fs.(asyncFS)
	if !ok {
		return false, 0, 0
	}
	return true, afs.a.taken.Load(), afs.a.fellBack.Load()
}
