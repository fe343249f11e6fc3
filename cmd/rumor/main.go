// Command rumor is the single rumor binary: `rumor node` runs a node.
// Later subcommands run a local cluster and the bench suite.
//
// This is the only package that calls os.Exit.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rumor-kv/rumor/internal/gcfloor"
	"github.com/rumor-kv/rumor/internal/sysmon"
	"github.com/rumor-kv/rumor/node"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
	"github.com/urfave/cli/v2"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		// First of all, while a restart loses nothing: see package sysmon.
		if err := sysmon.Exec(); err != nil {
			fmt.Fprintf(os.Stderr, "rumor: could not restart with GODEBUG=%s, the node runs with Go's default: %v\n", sysmon.Setting, err)
		}
	}
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "rumor:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:     "rumor",
		Usage:    "a leaderless, gossip-based, always-writable key-value store",
		Version:  wire.Version,
		Commands: []*cli.Command{nodeCommand(), clusterCommand()},
	}
}

// env names a flag's environment variable: RUMOR_<FLAG>.
func env(flag string) []string {
	return []string{"RUMOR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run one rumor node in the foreground",
		Description: "Serves the Redis-compatible protocol on --client-addr and the HTTP API on --http-addr.\n" +
			"SIGINT or SIGTERM shuts the node down cleanly; a second signal exits at once.\n" +
			"Every flag can also be set by an environment variable RUMOR_<FLAG>, e.g. RUMOR_DATA_DIR.\n" +
			"On Linux the node first starts itself again, in place, with GODEBUG=" + sysmon.Setting + " added: it keeps\n" +
			"Go's monitor thread out of a deep sleep that costs a wakeup after every idle moment (see INFO server's godebug).\n" +
			"A GODEBUG that sets schedtrace is left alone: GODEBUG=schedtrace=0 keeps Go's default.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", EnvVars: env("name"), Usage: "node name shown in logs and INFO (default: host name)"},
			&cli.StringFlag{Name: "data-dir", EnvVars: env("data-dir"), Value: "./.rumor-data", Usage: "data directory; created if missing. It holds the node's actor id"},
			&cli.StringFlag{Name: "client-addr", EnvVars: env("client-addr"), Value: "127.0.0.1:7379", Usage: "listen address of the Redis-compatible (RESP2) protocol"},
			&cli.StringFlag{Name: "http-addr", EnvVars: env("http-addr"), Value: "127.0.0.1:7380", Usage: "listen address of the HTTP API; \"-\" disables it"},
			&cli.StringFlag{Name: "gossip-addr", EnvVars: env("gossip-addr"), Usage: "serf/memberlist address (UDP and TCP); setting it makes the node a cluster member, served by quorum reads and writes"},
			&cli.StringFlag{Name: "peer-addr", EnvVars: env("peer-addr"), Usage: "peer RPC address (default: the client address's host, a port the OS picks, advertised by gossip)"},
			&cli.StringSliceFlag{Name: "join", EnvVars: env("join"), Usage: "gossip address of a running member to join through; repeat or separate with commas"},
			&cli.IntFlag{Name: "replicas", EnvVars: env("replicas"), Value: 3, Usage: "N, replicas of each partition (cluster)"},
			&cli.IntFlag{Name: "r", EnvVars: env("r"), Value: 2, Usage: "R, replicas a read waits for (cluster)"},
			&cli.IntFlag{Name: "w", EnvVars: env("w"), Value: 2, Usage: "W, replicas a write waits for, this one included (cluster)"},
			&cli.BoolFlag{Name: "sloppy", EnvVars: env("sloppy"), Value: true, Usage: "sloppy quorum: count stand-ins holding hinted copies for unreachable replicas towards R and W; false demands the preferred replicas (a request may override it with SLOPPY yes|no) (cluster)"},
			&cli.Float64Flag{Name: "read-repair-chance", EnvVars: env("read-repair-chance"), Value: 0.1, Usage: "share of reads that also check, and repair, the replicas they did not need to ask; 0 never (cluster)"},
			&cli.IntFlag{Name: "max-hints", EnvVars: env("max-hints"), Value: 1000000, Usage: "most hinted copies this node keeps for unreachable replicas; past it a stand-in copy is refused and counted as dropped (cluster)"},
			&cli.StringFlag{Name: "cluster-key", EnvVars: env("cluster-key"), Usage: "a secret every node of the cluster is given (cluster): gossip is encrypted with it and peer connections must prove they hold it, so that no other process can join or call the nodes. Empty: none (the peer and gossip ports must then be reachable by trusted hosts only). Prefer the environment variable: a command line is visible to every user of the machine"},
			&cli.DurationFlag{Name: "reconnect-timeout", EnvVars: env("reconnect-timeout"), Usage: "if set, how long a failed member is kept and retried before it is forgotten (reaped) as gone for good by a node that sees most of the cluster alive, and the hints kept for it go to the replicas that now hold its partitions; until rebalancing is built, writes acknowledged while it was gone can read as missing when it returns. 0, the default: never; a failed node stays a member, retried, until rumor cluster remove (cluster)"},
			&cli.DurationFlag{Name: "request-timeout", EnvVars: env("request-timeout"), Value: time.Second, Usage: "bound on a request's calls to other nodes (cluster)"},
			&cli.IntFlag{Name: "partitions", EnvVars: env("partitions"), Value: ring.DefaultPartitions, Usage: "number of partitions Q, a power of two; fixed when the data directory is created"},
			&cli.BoolFlag{Name: "sync", EnvVars: env("sync"), Value: true, Usage: "acknowledge a write only after its WAL record is fsynced (concurrent writes share one fsync). --sync=false acknowledges once the write is in memory: faster, and a crash may lose the last moments of writes (at most --flush-interval)"},
			&cli.DurationFlag{Name: "flush-interval", EnvVars: env("flush-interval"), Value: 100 * time.Millisecond, Usage: "with --sync=false, how often the write-ahead log is written and fsynced: the most a crash can lose; negative never"},
			&cli.DurationFlag{Name: "sync-window", EnvVars: env("sync-window"), Usage: "with --sync, the least time between two fsyncs of the write-ahead log: writes arriving meanwhile wait and share the next one (as Cassandra's commitlog_sync_group_window). Each write is still fsynced before it is acknowledged; fewer fsyncs cost less CPU and add latency, which pays off when the CPUs are the bottleneck (several nodes on one machine) and not otherwise. 0 (default): the next fsync starts when the previous one ends"},
			&cli.StringFlag{Name: "cache-size", EnvVars: env("cache-size"), Value: "64MB", Usage: "pebble block cache size (bytes, or with a unit: 64MB, 1GB; kb/mb/gb are powers of 1024, k/m/g of 1000)"},
			&cli.StringFlag{Name: "object-cache-size", EnvVars: env("object-cache-size"), Value: "16MB", Usage: "memory for the objects of recently used keys, in front of pebble; 0 disables it"},
			&cli.StringFlag{Name: "memtable-size", EnvVars: env("memtable-size"), Value: "16MB", Usage: "size of one pebble memtable; up to four may be in memory while flushes catch up"},
			&cli.DurationFlag{Name: "idle-flush", EnvVars: env("idle-flush"), Value: 250 * time.Millisecond, Usage: "write the memtable out to a table once writes have paused this long (if it took at least a sixteenth of --memtable-size since): the next burst of writes starts on an empty memtable, whose inserts cost less, and does not pay for the flush; negative never"},
			&cli.StringFlag{Name: "max-key-size", EnvVars: env("max-key-size"), Value: "8kb", Usage: "largest key accepted"},
			&cli.StringFlag{Name: "max-value-size", EnvVars: env("max-value-size"), Value: "4mb", Usage: "largest value accepted"},
			&cli.IntFlag{Name: "max-siblings", EnvVars: env("max-siblings"), Value: node.DefaultMaxSiblings, Usage: "most siblings a write may leave on a key (concurrent writes and stale contexts make them): a write past it is refused until a write with their context resolves them, as Riak's max_siblings; 0: no bound"},
			&cli.StringFlag{Name: "max-object-size", EnvVars: env("max-object-size"), Usage: "largest a write may make a key's object, all its siblings together, as Riak's max_object_size; default 16MB or four times --max-value-size, whichever is more; 0: no bound"},
			&cli.StringFlag{Name: "max-bulk", EnvVars: env("max-bulk"), Value: "8mb", Usage: "largest RESP bulk string accepted (at least --max-value-size)"},
			&cli.IntFlag{Name: "max-args", EnvVars: env("max-args"), Value: 65536, Usage: "most arguments in one command"},
			&cli.StringFlag{Name: "max-inline", EnvVars: env("max-inline"), Value: "64kb", Usage: "longest inline (nc-style) command line"},
			&cli.StringFlag{Name: "max-request", EnvVars: env("max-request"), Value: "64mb", Usage: "largest total size of one command's arguments"},
			&cli.DurationFlag{Name: "idle-timeout", EnvVars: env("idle-timeout"), Value: 5 * time.Minute, Usage: "close client connections idle this long; 0 never closes them"},
			&cli.IntFlag{Name: "max-clients", EnvVars: env("max-clients"), Value: 10000, Usage: "most client connections at once"},
			&cli.IntFlag{Name: "procs", EnvVars: env("procs"), Usage: "how many threads may run the node's Go code at once (GOMAXPROCS); 0: the Go runtime's choice, one per CPU the process may use. Fewer than the CPUs leaves the rest to what shares the machine: rumor cluster up gives each of its nodes a share"},
			&cli.StringFlag{Name: "gc-min-heap", EnvVars: env("gc-min-heap"), Value: "64MB", Usage: "the memory the Go runtime may reach before it collects garbage, as long as what it must keep (the live heap, goroutine stacks, its own metadata) is under half of it (above, Go's default: a collection when the heap has doubled). A node keeps little on the Go heap (pebble's caches are outside it): without this a busy node collects several times a second. 0 leaves Go's default; so does setting GOGC or GOMEMLIMIT"},
			&cli.BoolFlag{Name: "pprof", EnvVars: env("pprof"), Usage: "serve Go's profiler under /debug/pprof/ on the HTTP address (for performance work; do not expose)"},
			&cli.BoolFlag{Name: "allow-faults", EnvVars: env("allow-faults"), Usage: "take fault injection through PUT /faults: black-hole or delay gossip and peer traffic with named nodes (for partition tests, as rumor cluster partition does; do not use in production)"},
			&cli.StringFlag{Name: "faults", EnvVars: env("faults"), Usage: "with --allow-faults, the fault state to start with, as PUT /faults takes it ({\"blocked\":[\"n2\"],\"delays\":{\"n3\":\"50ms\"}}), in force before the node gossips or calls anyone: rumor cluster start restarts a node into its partition with it"},
			&cli.StringFlag{Name: "log-level", EnvVars: env("log-level"), Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: runNode,
	}
}

func runNode(c *cli.Context) error {
	cfg, err := nodeConfig(c)
	if err != nil {
		return err
	}
	procs, err := nodeProcs(c)
	if err != nil {
		return err
	}
	if procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	gcMinHeap, err := nodeGCMinHeap(c)
	if err != nil {
		return err
	}
	logger := cfg.Logger
	startGCFloor(gcMinHeap, logger)
	// After a burst, memory goes back to the OS within seconds of the
	// node going quiet, not at Go's forced collection minutes later.
	// (The process exits when the node stops: no need to stop it.)
	go gcfloor.ReleaseWhenIdle(idleReleaseEvery, max(2*gcMinHeap, idleReleaseMinHeld), nil)
	// Before the node starts, and so before it says it is ready: a
	// SIGTERM sent as soon as it is (by a supervisor, a script, a test)
	// must shut it down cleanly, not end it where it stands.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// Starting may not end: pebble replaying its log on a full disk
	// retries its flush for ever. A signal, or the store failing, ends
	// the process then (as a crash would: what is on disk stays).
	startFailed := make(chan error, 1)
	cfg.OnStoreFailure = func(err error) {
		select {
		case startFailed <- err:
		default:
		}
	}
	type startResult struct {
		n   *node.Node
		err error
	}
	startc := make(chan startResult, 1)
	go func() {
		n, err := node.Start(cfg)
		startc <- startResult{n, err}
	}()
	var n *node.Node
	select {
	case r := <-startc:
		if r.err != nil {
			return r.err
		}
		n = r.n
	case sig := <-sigs:
		select {
		case r := <-startc:
			// Started meanwhile (it logs "node started" before Start
			// returns, and a supervisor or a test may signal on that
			// line): a clean shutdown, not an exit where it stands,
			// which left the store unclosed.
			if r.err != nil {
				return r.err
			}
			logger.Info("shutting down", "signal", sig.String())
			return r.n.Close()
		default:
		}
		return fmt.Errorf("%s while the node was starting: exiting", sig)
	case err := <-startFailed:
		return fmt.Errorf("the store failed while the node was starting: %w", err)
	}
	ready := fmt.Sprintf("rumor node %s ready: redis-cli -p %s", n.Name(), port(n.ClientAddr()))
	if n.HTTPAddr() != "" {
		ready += fmt.Sprintf(" | curl http://%s/health", n.HTTPAddr())
	}
	fmt.Fprintln(os.Stderr, ready)

	var failed error
	select {
	case sig := <-sigs:
		logger.Info("shutting down; a second signal exits at once", "signal", sig.String())
	case <-n.Left():
		logger.Info("left the cluster for good; shutting down")
	case <-n.Failed():
		// Fail-stop: the store refuses reads and writes, and a restart
		// replays what reached the disk (the process exits non-zero, so a
		// supervisor restarts it; the other replicas serve meanwhile).
		failed = n.StoreErr()
		advice := "restart the node"
		if errors.Is(failed, store.ErrCorrupt) {
			advice = "restarting will not help: see the error"
		}
		logger.Error("the store failed; shutting down: "+advice, "err", failed)
	}
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "rumor: second signal, exiting now")
		os.Exit(130)
	}()
	if failed == nil {
		return n.Close()
	}
	// A failed store may not close: pebble waits for a flush it retries
	// for ever on a full disk. The process exits anyway, non-zero.
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		return errors.Join(failed, err)
	case <-time.After(failedCloseTimeout):
		logger.Error("the node did not close within its time after the store failed; exiting without it", "wait", failedCloseTimeout)
		return failed
	}
}

// failedCloseTimeout bounds the shutdown of a node whose store failed.
const failedCloseTimeout = 10 * time.Second

// nodeGCMinHeap returns --gc-min-heap, checked: 0 leaves the collector to
// Go's default.
func nodeGCMinHeap(c *cli.Context) (uint64, error) {
	floor, err := parseSize(c.String("gc-min-heap"))
	if err != nil {
		return 0, fmt.Errorf("--gc-min-heap: %w", err)
	}
	return uint64(floor), nil
}

// idleReleaseEvery is how long a node must go without a collection for
// the memory a burst left to go back to the OS (gcfloor.ReleaseWhenIdle).
const idleReleaseEvery = 10 * time.Second

// idleReleaseMinHeld: a heap holding less (or less than twice
// --gc-min-heap, under which the collector's floor lets it grow anyway)
// is left as it is when the node goes quiet.
const idleReleaseMinHeld = 128 << 20

// startGCFloor applies --gc-min-heap (see package gcfloor), unless the
// user set GOGC or GOMEMLIMIT, which then have the last word.
func startGCFloor(floor uint64, logger *slog.Logger) {
	if floor == 0 {
		return
	}
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if val, set := os.LookupEnv(v); set {
			logger.Info(v+" is set: --gc-min-heap is not applied", v, val)
			return
		}
	}
	gcfloor.Start(floor)
}

// maxProcs bounds --procs: more threads than this only add scheduling.
const maxProcs = 1024

// nodeProcs returns --procs, checked: 0 leaves GOMAXPROCS to the runtime.
func nodeProcs(c *cli.Context) (int, error) {
	p := c.Int("procs")
	if p < 0 || p > maxProcs {
		return 0, fmt.Errorf("--procs must be between 0 (the runtime's choice) and %d, not %d", maxProcs, p)
	}
	return p, nil
}

// nodeConfig turns rumor node's flags into the node's configuration.
func nodeConfig(c *cli.Context) (node.Config, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return node.Config{}, fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sizes := map[string]int64{}
	for _, f := range []string{"cache-size", "object-cache-size", "memtable-size", "max-key-size", "max-value-size", "max-bulk", "max-inline", "max-request"} {
		v, err := parseSize(c.String(f))
		if err != nil {
			return node.Config{}, fmt.Errorf("--%s: %w", f, err)
		}
		sizes[f] = v
	}
	objects := node.ObjectLimits{MaxSiblings: c.Int("max-siblings")}
	if objects.MaxSiblings < 0 {
		return node.Config{}, errors.New("--max-siblings must not be negative (0: no bound)")
	}
	if objects.MaxSiblings == 0 {
		objects.MaxSiblings = -1 // the flag's 0 means no bound; the node's 0 means default
	}
	if v := c.String("max-object-size"); v != "" {
		n, err := parseSize(v)
		if err != nil {
			return node.Config{}, fmt.Errorf("--max-object-size: %w", err)
		}
		objects.MaxSize = int(n)
		if n == 0 {
			objects.MaxSize = -1
		}
	}
	if sizes["object-cache-size"] == 0 {
		sizes["object-cache-size"] = -1 // the flag's 0 means none; the store's 0 means default
	}
	idle := c.Duration("idle-timeout")
	if idle == 0 {
		idle = -1 // the flag's 0 means never; wire's 0 means default
	}
	cfg := node.Config{
		Name:            c.String("name"),
		DataDir:         c.String("data-dir"),
		ClientAddr:      c.String("client-addr"),
		HTTPAddr:        c.String("http-addr"),
		Partitions:      c.Int("partitions"),
		Sync:            c.Bool("sync"),
		FlushInterval:   c.Duration("flush-interval"),
		SyncWindow:      c.Duration("sync-window"),
		CacheSize:       sizes["cache-size"],
		MemTableSize:    uint64(sizes["memtable-size"]),
		IdleFlush:       c.Duration("idle-flush"),
		ObjectCacheSize: sizes["object-cache-size"],
		Logger:          logger,
		Pprof:           c.Bool("pprof"),
		MaxHints:        c.Int("max-hints"),
		Objects:         objects,
		AllowFaults:     c.Bool("allow-faults"),
		Server: wire.ServerConfig{
			Limits: wire.Limits{
				MaxArgs:    c.Int("max-args"),
				MaxBulk:    int(sizes["max-bulk"]),
				MaxInline:  int(sizes["max-inline"]),
				MaxRequest: int(sizes["max-request"]),
			},
			MaxKeySize:   int(sizes["max-key-size"]),
			MaxValueSize: int(sizes["max-value-size"]),
			IdleTimeout:  idle,
			MaxClients:   c.Int("max-clients"),
		},
	}
	if addr := c.String("gossip-addr"); addr != "" {
		var join []string
		for _, j := range c.StringSlice("join") {
			for _, a := range strings.Split(j, ",") {
				if a = strings.TrimSpace(a); a != "" {
					join = append(join, a)
				}
			}
		}
		cfg.Cluster = &node.ClusterConfig{
			GossipAddr: addr, PeerAddr: c.String("peer-addr"), Join: join,
			Replicas: c.Int("replicas"), R: c.Int("r"), W: c.Int("w"), Timeout: c.Duration("request-timeout"),
			Strict: !c.Bool("sloppy"), ReadRepairChance: c.Float64("read-repair-chance"),
			ReconnectTimeout: c.Duration("reconnect-timeout"),
		}
		if key := c.String("cluster-key"); key != "" {
			cfg.Cluster.Key = wire.ClusterKey(key)
		}
		if cfg.Cluster.Timeout < 0 {
			return node.Config{}, fmt.Errorf("--request-timeout must not be negative, not %v", cfg.Cluster.Timeout)
		}
		if cfg.Cluster.ReconnectTimeout < 0 {
			return node.Config{}, fmt.Errorf("--reconnect-timeout must not be negative (0 is never), not %v", cfg.Cluster.ReconnectTimeout)
		}
		if cfg.Cluster.ReadRepairChance <= 0 {
			cfg.Cluster.ReadRepairChance = -1 // the flag's 0 is never, the config's is the default
		}
	} else if len(c.StringSlice("join")) > 0 {
		return node.Config{}, fmt.Errorf("--join needs --gossip-addr")
	} else if c.String("cluster-key") != "" {
		return node.Config{}, fmt.Errorf("--cluster-key needs --gossip-addr")
	}
	if cfg.Partitions <= 0 {
		return node.Config{}, fmt.Errorf("--partitions must be a positive power of two, not %d", cfg.Partitions)
	}
	if f := c.String("faults"); f != "" {
		if !cfg.AllowFaults {
			return node.Config{}, errors.New("--faults needs --allow-faults")
		}
		s, err := node.ParseFaultState([]byte(f))
		if err != nil {
			return node.Config{}, fmt.Errorf("--faults: %w", err)
		}
		cfg.Faults = s
	}
	return cfg, nil
}

func port(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// parseSize reads a byte size the way Redis's config does: a plain number
// of bytes, or with a unit where k, m, g are powers of 1000 and kb, mb, gb
// (and kib, mib, gib) are powers of 1024. Case does not matter.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes, optionally with a unit such as 64MB", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
