// Package node is one running rumor node: it opens the store, serves the
// client protocols from package wire, and coordinates requests. Alone, a
// node holds every key itself; in a cluster (Config.Cluster) its
// Coordinator is the request path: placement, forwarding to a replica,
// sloppy quorum reads and writes over a Transport with a circuit breaker
// per peer, hinted handoff and read repair. The Coordinator is tested over
// MemNetwork, which drops, delays and partitions, and runs over gossip and
// peer RPC in the binary.
//
// Start a node with a Config and stop it with Close:
//
//	n, err := node.Start(node.Config{Name: "n1", DataDir: dir, ClientAddr: "127.0.0.1:7379", ...})
//	defer n.Close()
//
// A node started with Config.AllowFaults takes fault injection through
// PUT /faults (see Faults): it black-holes or delays its gossip and peer
// traffic with named nodes, for partition tests.
//
// Every write is a read-modify-write of the key's object in the store,
// atomic per key: SET and PUT update the register with a fresh dot of this
// node's actor, INCR and friends add to the counter's entry of this actor,
// deletes leave a tombstone (the register's context) and reset the counter.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
	"golang.org/x/sys/unix"
)

// Config configures a node. Zero fields mean their defaults.
type Config struct {
	// Name identifies the node to people (logs, INFO). Default: host name.
	Name string
	// DataDir holds the store. Required.
	DataDir string
	// ClientAddr is the RESP listen address. Default 127.0.0.1:7379.
	ClientAddr string
	// HTTPAddr is the HTTP listen address. Default 127.0.0.1:7380; "-"
	// disables HTTP.
	HTTPAddr string
	// Partitions is Q. Default ring.DefaultPartitions.
	Partitions int
	// Sync acknowledges writes only once fsynced (group commit).
	Sync bool
	// FlushInterval, without Sync, is how often the WAL is fsynced
	// (store.Options.FlushInterval; default 100ms).
	FlushInterval time.Duration
	// SyncWindow, with Sync, is the least time between two fsyncs
	// (store.Options.SyncWindow; default 0).
	SyncWindow time.Duration
	// CacheSize is pebble's block cache in bytes (default 64 MiB).
	CacheSize int64
	// MemTableSize is one pebble memtable's size in bytes (default 16 MiB).
	MemTableSize uint64
	// IdleFlush is how long writes pause before the store flushes its
	// memtable (store.Options.IdleFlush; default 250ms, negative never).
	IdleFlush time.Duration
	// ObjectCacheSize is the store's cache of recently used objects in
	// bytes (default 16 MiB; negative disables it).
	ObjectCacheSize int64
	// Server holds the client protocol's limits; Backend, Info and
	// Metrics are filled in by the node.
	Server wire.ServerConfig
	// Objects bounds what a client's write may grow a key's object to. A
	// zero field means its default (100 siblings; 16 MiB or four values
	// of the largest size, whichever is more), a negative one no bound.
	Objects ObjectLimits
	// MaxHints bounds the hinted copies kept for unreachable replicas
	// (store.Options.MaxHints; default 1,000,000).
	MaxHints int
	// Cluster, if set, makes the node a cluster member (see ClusterConfig);
	// otherwise it serves every key from its own store.
	Cluster *ClusterConfig
	// Pprof serves Go's profiler under /debug/pprof/ on the HTTP address.
	Pprof bool
	// AllowFaults lets PUT /faults black-hole and delay this node's
	// traffic with named nodes (see Faults). For tests only; without it
	// the control is refused and the node's network is untouched.
	AllowFaults bool
	// Faults, with AllowFaults, is the fault state the node starts with,
	// set before it gossips or calls anyone: a node restarted into a
	// partition (`rumor cluster start`) did both for a moment before the
	// CLI could set it, and met the other side.
	Faults FaultState
	// OnStoreFailure, if set, is called once when the store fails (as
	// Failed is closed), also while Start is still opening it: a store
	// that cannot flush while replaying its log on a full disk may never
	// let Start return.
	OnStoreFailure func(error)
	// Clock gives write times for siblings. Default time.Now.
	Clock func() time.Time
	// Logger; default discards.
	Logger *slog.Logger

	// storeFS, set by tests, is the store's filesystem (pebble's
	// crashable in-memory one, to lose what was not fsynced).
	storeFS vfs.FS
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: DataDir is required"))
	}
	if c.Partitions != 0 {
		if err := ring.ValidatePartitions(c.Partitions); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("node: CacheSize must not be negative"))
	}
	if !c.Faults.Empty() {
		if !c.AllowFaults {
			errs = append(errs, errors.New("node: a starting fault state needs AllowFaults"))
		} else if err := c.Faults.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("node: starting fault state: %w", err))
		}
	}
	// A value of the largest size, alone, must fit in an object: the
	// value, its dot and time, the context (one entry each for a few
	// actors) take under objectOverhead more.
	if value := cmp.Or(c.Server.MaxValueSize, wire.DefaultMaxValueSize); c.Objects.MaxSize > 0 && c.Objects.MaxSize < value+objectOverhead {
		errs = append(errs, fmt.Errorf("node: max object size %d leaves no room for a value of max value size %d (it takes %d more bytes): no value that size could be written", c.Objects.MaxSize, value, objectOverhead))
	}
	return errors.Join(errs...)
}

func (c *Config) ensureDefaults() {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.ClientAddr == "" {
		c.ClientAddr = "127.0.0.1:7379"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:7380"
	}
	if c.Partitions == 0 {
		c.Partitions = ring.DefaultPartitions
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Objects.MaxSiblings == 0 {
		c.Objects.MaxSiblings = DefaultMaxSiblings
	}
	if c.Objects.MaxSize == 0 {
		c.Objects.MaxSize = max(DefaultMaxObjectSize, 4*c.Server.MaxValueSize)
	}
}

// Node is a running node.
type Node struct {
	cfg      Config
	st       *store.Store
	started  time.Time
	registry *prometheus.Registry

	resp       *wire.Server
	clientLn   net.Listener
	httpSrv    *http.Server
	httpLn     net.Listener
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
	serveErrMu sync.Mutex
	serveErr   error
	cluster    *clusterState // nil when the node runs alone
	faults     Faults        // used only with cfg.AllowFaults
	left       chan struct{} // closed when the node left its cluster
	leftOnce   sync.Once
	failure    *storeFailure
}

// storeFailure's done is closed when the store fails
// (store.Options.OnFailure, which the store calls once).
type storeFailure struct {
	done   chan struct{}
	once   sync.Once
	notify func(error) // Config.OnStoreFailure
}

func (f *storeFailure) report(err error) {
	f.once.Do(func() {
		close(f.done)
		if f.notify != nil {
			f.notify(err)
		}
	})
}

// Left is closed when the node has left its cluster for good (CLUSTER
// LEAVE); the process should then shut down.
func (n *Node) Left() <-chan struct{} { return n.left }

// Failed is closed when the node's store has failed (a WAL fsync returned
// an error: see store.Options.OnFailure). The store then refuses every read
// and write, so the process should shut down, and be restarted, which
// replays what reached the disk. StoreErr says why.
func (n *Node) Failed() <-chan struct{} { return n.failure.done }

// StoreErr is why the store failed, or nil.
func (n *Node) StoreErr() error { return n.st.Err() }

// Start opens the store, listens on the configured addresses and serves.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ensureDefaults()
	maxClients, httpConns, pebbleFiles := cmp.Or(cfg.Server.MaxClients, wire.DefaultMaxClients), maxHTTPConns, 0 // 0: pebble's default
	if limit, err := openFileLimit(); err == nil {
		want := maxClients
		maxClients, httpConns, pebbleFiles = fileBudget(want, limit)
		if maxClients < want || pebbleFiles < maxPebbleFiles {
			cfg.Logger.Warn("the open-file limit is too low for max-clients and pebble's table cache: both lowered (raise `ulimit -n`)",
				"open_file_limit", limit, "max_clients", want, "now", maxClients, "http_connections", httpConns, "pebble_open_files", pebbleFiles)
		}
	}
	failure := &storeFailure{done: make(chan struct{}), notify: cfg.OnStoreFailure}
	st, err := store.Open(store.Options{
		Dir: cfg.DataDir, Partitions: cfg.Partitions, Sync: cfg.Sync, FlushInterval: cfg.FlushInterval, SyncWindow: cfg.SyncWindow,
		CacheSize: cfg.CacheSize, MemTableSize: cfg.MemTableSize, IdleFlush: cfg.IdleFlush, MaxOpenFiles: pebbleFiles,
		ObjectCacheSize: cfg.ObjectCacheSize, MaxHints: cfg.MaxHints, Logger: cfg.Logger, FS: cfg.storeFS,
		OnFailure: failure.report, Owner: cfg.Name,
	})
	if err != nil {
		return nil, err
	}
	if prev := st.PreviousOwner(); prev != "" {
		cfg.Logger.Warn("the data directory was another node's (copied, or this node was renamed): this node writes under a new actor id, so that the two never write under one",
			"previous_name", prev, "actor", fmt.Sprintf("%016x", st.Actor()))
	}
	if st.ReplacedActor() {
		cfg.Logger.Warn("the data directory was not closed cleanly; this node now writes under a new actor id, so no write lost in the crash can be mistaken for a new one",
			"actor", fmt.Sprintf("%016x", st.Actor()))
	}
	if st.RestoredCopy() {
		cfg.Logger.Warn("the data directory is a copy of the one this node last closed (a backup restored?): this node now writes under a new actor id, so that none of the writes it made since the copy can be mistaken for a new one",
			"actor", fmt.Sprintf("%016x", st.Actor()))
	}
	n := &Node{cfg: cfg, st: st, started: cfg.Clock(), registry: prometheus.NewRegistry(), left: make(chan struct{}), failure: failure}
	if cfg.AllowFaults {
		_ = n.faults.Set(cfg.Faults) // valid: see Validate
		if s := n.faults.State(); !s.Empty() {
			cfg.Logger.Warn("fault injection: starting with", "faults", s.String())
		}
	}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), st.Collector())
	metrics := wire.NewMetrics(n.registry)

	scfg := cfg.Server
	scfg.Backend, scfg.Info, scfg.Metrics, scfg.Logger = n, n.info, metrics, cfg.Logger
	scfg.MaxClients = maxClients
	if cfg.Cluster != nil {
		scfg.Cluster = n.clusterCommand
	}
	if n.resp, err = wire.NewServer(scfg); err != nil {
		st.Close()
		return nil, err
	}
	if n.clientLn, err = net.Listen("tcp", cfg.ClientAddr); err != nil {
		st.Close()
		return nil, fmt.Errorf("node: client address: %w", err)
	}
	if cfg.HTTPAddr != "-" {
		if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			n.clientLn.Close()
			st.Close()
			return nil, fmt.Errorf("node: http address: %w", err)
		}
		var handler http.Handler = wire.NewHTTPHandler(wire.HTTPConfig{
			Backend: n, MaxKeySize: scfg.MaxKeySize, MaxValueSize: scfg.MaxValueSize,
			Gatherer: n.registry, Metrics: metrics, Health: n.health,
			Cluster: func() any {
				if v := n.Cluster(); v != nil {
					return v
				}
				return map[string]any{"cluster_enabled": false, "self": n.cfg.Name}
			},
			Faults: n.faultsView, SetFaults: n.setFaults,
		})
		if cfg.Pprof {
			mux := http.NewServeMux()
			mux.Handle("/", handler)
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			handler = mux
		}
		// Bounded as the RESP side is: a request that stalls (headers,
		// or a body that never ends) gives its connection up, and at most
		// httpConns are served at once (more make the longest idle close,
		// or wait to be accepted), so that stalled clients cannot take
		// every file the process may open.
		limit := newHTTPLimit(n.httpLn, httpConns)
		n.httpLn = limit
		writeTimeout := httpWriteTimeout
		if cfg.Pprof {
			writeTimeout = 0 // a CPU profile or trace may take longer than any bound
		}
		n.httpSrv = &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       httpReadTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ConnState:         limit.state,
		}
	}
	if cfg.Cluster != nil {
		if err := n.startCluster(*cfg.Cluster); err != nil {
			n.clientLn.Close() // not served yet: Close would leave them open
			if n.httpLn != nil {
				n.httpLn.Close()
			}
			n.Close()
			return nil, err
		}
	}
	// Clients are served only now: a request that came in before the
	// cluster was set up would have been a single node's, acknowledged
	// with one copy whatever W asked for, on a node that may not even be
	// a replica of its key (and n.cluster is written above unguarded).
	if n.httpSrv != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.httpSrv.Serve(n.httpLn); !errors.Is(err, http.ErrServerClosed) {
				n.setServeErr(fmt.Errorf("node: http: %w", err))
			}
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.resp.Serve(n.clientLn); !errors.Is(err, wire.ErrServerClosed) {
			n.setServeErr(fmt.Errorf("node: client protocol: %w", err))
		}
	}()
	gossipAddr := ""
	if n.cluster != nil {
		gossipAddr = n.cluster.gossip.Addr()
	}
	cfg.Logger.Info("node started", "name", cfg.Name, "actor", fmt.Sprintf("%016x", st.Actor()),
		"client", n.clientLn.Addr().String(), "http", n.HTTPAddr(), "gossip", gossipAddr, "data", cfg.DataDir, "sync", cfg.Sync)
	return n, nil
}

func (n *Node) setServeErr(err error) {
	n.cfg.Logger.Error("listener stopped", "err", err)
	n.serveErrMu.Lock()
	n.serveErr = errors.Join(n.serveErr, err)
	n.serveErrMu.Unlock()
}

// ClientAddr is the address the RESP server listens on.
func (n *Node) ClientAddr() string { return n.clientLn.Addr().String() }

// HTTPAddr is the address the HTTP API listens on, "" if disabled.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Actor is this node's actor id.
func (n *Node) Actor() uint64 { return n.st.Actor() }

// Name is this node's name (Config.Name, or the host's name by default).
func (n *Node) Name() string { return n.cfg.Name }

// Close stops serving, waits for in-flight requests and closes the store.
// It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.httpSrv != nil {
			// Requests in flight get 5 seconds; then the connections still
			// open (a client that stalled mid-body, a long profile) are
			// cut. That is the shutdown working, not a failure of it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.httpSrv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
				n.cfg.Logger.Warn("HTTP requests still running after 5s; closing their connections")
				errs = append(errs, n.httpSrv.Close())
			} else {
				errs = append(errs, err)
			}
			cancel()
		}
		errs = append(errs, n.resp.Close())
		if n.cluster != nil {
			n.cluster.close()
		}
		n.wg.Wait()
		errs = append(errs, n.st.Close())
		n.serveErrMu.Lock()
		errs = append(errs, n.serveErr)
		n.serveErrMu.Unlock()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func (n *Node) partition(key []byte) uint32 { return ring.Partition(key, n.cfg.Partitions) }

// Get implements wire.Backend.
func (n *Node) Get(ctx context.Context, key []byte) (crdt.Object, error) {
	if n.cluster != nil {
		return n.cluster.coord.Get(ctx, key)
	}
	o, _, err := n.st.Get(n.partition(key), key)
	return o, err
}

// Put implements wire.Backend.
func (n *Node) Put(ctx context.Context, key, value []byte, opts wire.WriteOptions) error {
	if n.cluster != nil {
		return n.cluster.coord.Put(ctx, key, value, opts)
	}
	_, err := n.st.UpdateDeferred(n.partition(key), key, putFn(n.st.Actor(), value, opts, n.cfg.Clock, n.cfg.Objects), deferSync(ctx))
	return err
}

// deferSync returns the function a single node's write hands its fsync
// wait to: the pipeline's wire.SyncGroup, or nil (wait before returning).
func deferSync(ctx context.Context) func(wait func() error) {
	if g := wire.SyncGroupFrom(ctx); g != nil {
		return g.Defer
	}
	return nil
}

// Delete implements wire.Backend.
func (n *Node) Delete(ctx context.Context, key []byte, opts wire.WriteOptions) (bool, error) {
	if n.cluster != nil {
		return n.cluster.coord.Delete(ctx, key, opts)
	}
	var existed bool
	_, err := n.st.UpdateDeferred(n.partition(key), key, deleteFn(n.st.Actor(), opts, n.cfg.Clock, &existed), deferSync(ctx))
	if errors.Is(err, errNothingToDo) {
		err = nil
	}
	return existed, err
}

// Incr implements wire.Backend.
func (n *Node) Incr(ctx context.Context, key []byte, delta int64) (int64, error) {
	if n.cluster != nil {
		return n.cluster.coord.Incr(ctx, key, delta)
	}
	o, err := n.st.UpdateDeferred(n.partition(key), key, incrFn(n.st.Actor(), delta), deferSync(ctx))
	if err != nil {
		return 0, err
	}
	return o.Cnt.Value(), nil
}

// The writes, as store.Update functions run by the replica coordinating
// them (a single node, or a Coordinator).

// putFn writes value as a register: WRONGTYPE on a counter; without a
// client context it supersedes what this replica holds. A write that would
// grow the object past lim is refused (ObjectTooLargeError).
func putFn(actor uint64, value []byte, opts wire.WriteOptions, clock func() time.Time, lim ObjectLimits) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) {
		next := cur
		if len(opts.Counter.Entries) > 0 {
			// The key held a counter too, when read (it was INCRed
			// concurrently with a SET): the write resolves that as well.
			next.Cnt = cur.Cnt.ResetSeen(opts.Counter)
		}
		if !cur.Reg.Live() && next.Cnt.Live() {
			// A counter, and not only what the read saw of it (this
			// replica may hold the counter and not yet the register).
			return cur, wire.ErrWrongType
		}
		ctx := cur.Reg.Context
		if opts.HasContext {
			ctx = opts.Context
		}
		next.Reg = cur.Reg.Update(actor, ctx, value, false, clock().UnixNano())
		if err := lim.check(cur, next); err != nil {
			return cur, err
		}
		return next, nil
	}
}

// Default object limits (Config.Objects), as Riak's max_siblings and, at
// a size that keeps an object well inside one peer message, its
// max_object_size.
const (
	DefaultMaxSiblings   = 100
	DefaultMaxObjectSize = 16 << 20
)

// objectOverhead is what an object of one value takes beyond the value,
// with room for a context of several actors.
const objectOverhead = 1 << 10

// ObjectLimits bound what a client's write may grow a key's object to.
// Siblings pile up when writes race through different coordinators or
// carry stale contexts, and without a bound a key grows until it can no
// longer be read cheaply, replicated or handed off. Only a client's write
// is refused, never a merge of copies (that would lose acknowledged
// writes): concurrent writes can still take an object past the bounds,
// and a write that resolves siblings is always taken.
type ObjectLimits struct {
	MaxSiblings int // siblings; 0 or less: no bound
	MaxSize     int // bytes of the object's encoding; 0 or less: no bound
}

// check refuses next, cur after a write, if it passes a bound and grows
// the object in what it passes.
func (l ObjectLimits) check(cur, next crdt.Object) error {
	if n := len(next.Reg.Siblings); l.MaxSiblings > 0 && n > l.MaxSiblings && n > len(cur.Reg.Siblings) {
		return &ObjectTooLargeError{Siblings: n, MaxSiblings: l.MaxSiblings}
	}
	if l.MaxSize > 0 {
		if size := next.EncodedLen(); size > l.MaxSize && size > cur.EncodedLen() {
			return &ObjectTooLargeError{Siblings: len(next.Reg.Siblings), Size: size, MaxSize: l.MaxSize}
		}
	}
	return nil
}

// ObjectTooLargeError is a write refused by ObjectLimits. It wraps
// wire.ErrObjectTooLarge.
type ObjectTooLargeError struct {
	Siblings, MaxSiblings int // MaxSiblings set: the siblings bound
	Size, MaxSize         int // MaxSize set: the size bound
}

// objectTooLargePrefix starts every ObjectTooLargeError's text, so that
// a forwarded write's error is known again (peerError).
const objectTooLargePrefix = "object too large: "

func (e *ObjectTooLargeError) Error() string {
	const fix = "; resolve the siblings with a write that carries their context (VGET, then PUT key value CTX token)"
	if e.MaxSiblings > 0 {
		return fmt.Sprintf("%sthe write would make %d siblings, over max-siblings %d%s", objectTooLargePrefix, e.Siblings, e.MaxSiblings, fix)
	}
	return fmt.Sprintf("%sthe write would make the key's object %d bytes (%d siblings), over max-object-size %d%s", objectTooLargePrefix, e.Size, e.Siblings, e.MaxSize, fix)
}

func (e *ObjectTooLargeError) Unwrap() error { return wire.ErrObjectTooLarge }

// errNothingToDo aborts an Update that would write nothing new.
var errNothingToDo = errors.New("node: nothing to do")

// deleteFn deletes what the context covers: the register's siblings it
// covers and the counter's increments it carries (opts.Counter: those a
// coordinator's quorum read found may not have reached this replica
// yet), no more. Without a context it deletes what this replica holds.
// *existed reports whether it deleted something. With nothing to delete
// and no context it writes nothing (errNothingToDo).
func deleteFn(actor uint64, opts wire.WriteOptions, clock func() time.Time, existed *bool) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) {
		if opts.HasContext {
			next, deleted := cur.DeleteSeen(actor, opts.Context, opts.Counter, clock().UnixNano())
			// Only what the token covered goes: a token read before
			// this replica's values deletes none of them.
			*existed = deleted
			return next, nil
		}
		*existed = cur.Kind() != crdt.KindNone
		if !*existed {
			return cur, errNothingToDo
		}
		return cur.Delete(actor, cur.Reg.Context, clock().UnixNano()), nil
	}
}

// incrFn adds delta to this replica's entry of the counter: WRONGTYPE on
// a register, crdt.ErrOverflow past int64.
func incrFn(actor uint64, delta int64) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) {
		if cur.Kind() == crdt.KindRegister {
			return cur, wire.ErrWrongType
		}
		c, err := cur.Cnt.Add(actor, delta)
		cur.Cnt = c
		return cur, err
	}
}

func (n *Node) info() []wire.InfoSection {
	uptime := n.cfg.Clock().Sub(n.started)
	yesno := map[bool]string{true: "yes", false: "no"}
	m := n.st.Metrics()
	return []wire.InfoSection{
		{Name: "Server", Fields: [][2]string{
			{"rumor_version", wire.Version},
			{"redis_version", "7.0.0"}, // what tools check before using a command
			{"node_name", n.cfg.Name},
			{"actor_id", fmt.Sprintf("%016x", n.st.Actor())},
			{"process_id", strconv.Itoa(os.Getpid())},
			{"procs", strconv.Itoa(runtime.GOMAXPROCS(0))},
			{"gc_percent", gcSetting("/gc/gogc:percent")},
			{"gc_memory_limit", gcSetting("/gc/gomemlimit:bytes")},
			{"godebug", os.Getenv("GODEBUG")}, // as the runtime read it when the process started
			{"client_addr", n.ClientAddr()},
			{"http_addr", n.HTTPAddr()},
			{"partitions", strconv.Itoa(n.cfg.Partitions)},
			{"uptime_in_seconds", strconv.FormatInt(int64(uptime/time.Second), 10)},
			{"data_dir", n.cfg.DataDir},
		}},
		memoryInfo(m.BlockCache.Size),
		{Name: "Persistence", Fields: [][2]string{
			{"sync", yesno[n.cfg.Sync]},
			{"fsync", n.st.FsyncMode()},
			{"recovered_from_crash", yesno[n.st.ReplacedActor()]},
			{"restored_from_copy", yesno[n.st.RestoredCopy()]},
			{"engine", "pebble"},
			{"disk_bytes", strconv.FormatUint(m.DiskSpaceUsage(), 10)},
			{"memtable_bytes", strconv.FormatUint(m.MemTable.Size, 10)},
			{"block_cache_bytes", strconv.FormatInt(m.BlockCache.Size, 10)},
			{"wal_bytes_written", strconv.FormatUint(m.WAL.BytesWritten, 10)},
			{"flushes", strconv.FormatInt(m.Flush.Count, 10)},
			{"compactions", strconv.FormatInt(m.Compact.Count, 10)},
		}},
		n.clusterInfo(),
		n.faultsInfo(),
	}
}

// How long an HTTP request may take to arrive (headers and body) and its
// response to leave: a client that stalls gives its connection up.
const (
	httpReadTimeout  = time.Minute
	httpWriteTimeout = time.Minute
)

// The open files of a node: reservedFiles for its logs, listeners,
// gossip, its connections to peers and theirs to it (maxPeerConns);
// pebble's table cache (up to maxPebbleFiles, pebble's default); HTTP
// connections (up to maxHTTPConns); the rest for RESP clients.
const (
	maxPeerConns   = 256
	reservedFiles  = 64 + maxPeerConns
	maxPebbleFiles = 1000
	maxHTTPConns   = 1024
)

// fileBudget shares the process's open-file limit among pebble's table
// cache, HTTP and RESP connections, as Redis lowers maxclients to fit:
// past the limit a connection takes the files pebble needs, and writes
// stall. A low limit shrinks pebble's table cache (a quarter of what is
// left) and HTTP's share (an eighth) before the RESP clients' (five
// eighths of what is left: 440 of a common 1024).
func fileBudget(maxClients, fileLimit int) (resp, http, pebbleFiles int) {
	budget := max(fileLimit-reservedFiles, 16)
	pebbleFiles = min(maxPebbleFiles, max(budget/4, 2))
	http = min(maxHTTPConns, max(budget/8, 2))
	return min(maxClients, budget-pebbleFiles-http), http, pebbleFiles
}

// openFileLimit is the process's limit on open files (Go raises the soft
// limit to the hard one when it starts).
func openFileLimit() (int, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return int(min(l.Cur, math.MaxInt32)), nil
}

// memoryInfo is INFO's Memory section. used_memory, which redis-cli
// --stat and monitoring tools read, is the process's resident memory:
// pebble's memtables and block cache live outside the Go heap.
func memoryInfo(blockCache int64) wire.InfoSection {
	rss := residentBytes()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	goHeap, goTotal := s[0].Value.Uint64(), s[1].Value.Uint64()-s[2].Value.Uint64()
	if rss == 0 { // no /proc: what the Go runtime holds
		rss = goTotal
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return wire.InfoSection{Name: "Memory", Fields: [][2]string{
		{"used_memory", u(rss)},
		{"used_memory_human", humanBytes(rss)},
		{"used_memory_rss", u(rss)},
		{"used_memory_go_heap", u(goHeap)},
		{"used_memory_go_runtime", u(goTotal)},
		{"used_memory_block_cache", strconv.FormatInt(blockCache, 10)},
		{"maxmemory", "0"},
		{"maxmemory_policy", "noeviction"}, // rumor never evicts keys
	}}
}

// residentBytes is the process's resident set size, or 0 where
// /proc/self/statm cannot tell.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// humanBytes writes n as Redis's INFO does: 1.50M, 812.00K, 96B.
func humanBytes(n uint64) string {
	f := float64(n)
	for _, unit := range []string{"B", "K", "M", "G", "T"} {
		if f < 1024 || unit == "T" {
			if unit == "B" {
				return strconv.FormatUint(n, 10) + "B"
			}
			return strconv.FormatFloat(f, 'f', 2, 64) + unit
		}
		f /= 1024
	}
	return ""
}

func (n *Node) health() map[string]any {
	return map[string]any{"name": n.cfg.Name, "actor": fmt.Sprintf("%016x", n.st.Actor())}
}

// gcSetting reads one of the garbage collector's settings (GOGC, the
// memory limit), which the binary's --gc-min-heap adjusts: a number, or
// "off" (GOGC off, no limit).
func gcSetting(name string) string {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return "unknown"
	}
	if v := s[0].Value.Uint64(); v < math.MaxInt64 {
		return strconv.FormatUint(v, 10)
	}
	return "off"
}
