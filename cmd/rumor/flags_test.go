package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/node"
	"github.com/rumor-kv/rumor/wire"
	"github.com/urfave/cli/v2"
)

// parseNodeFlags runs rumor node's flags through nodeConfig (and
// nodeProcs, which runNode applies to the process itself) without starting
// a node.
func parseNodeFlags(t *testing.T, args ...string) (node.Config, error) {
	cfg, _, err := parseNodeProcs(t, args...)
	return cfg, err
}

// processSettings are the node flags runNode applies to the process.
type processSettings struct {
	procs     int
	gcMinHeap uint64
}

func parseNodeProcs(t *testing.T, args ...string) (node.Config, processSettings, error) {
	t.Helper()
	cmd := nodeCommand()
	var cfg node.Config
	var ps processSettings
	cmd.Action = func(c *cli.Context) error {
		var err error
		if cfg, err = nodeConfig(c); err != nil {
			return err
		}
		if ps.procs, err = nodeProcs(c); err != nil {
			return err
		}
		ps.gcMinHeap, err = nodeGCMinHeap(c)
		return err
	}
	app := &cli.App{Name: "rumor", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"rumor", "node"}, args...))
	return cfg, ps, err
}

// TestNodeFlagsReachTheConfig sets every node flag to a value other than
// its default and checks each lands in the node's configuration: a flag
// that is documented but not passed on (as --flush-interval was) fails
// here.
func TestNodeFlagsReachTheConfig(t *testing.T) {
	cfg, ps, err := parseNodeProcs(t,
		"--name", "n9", "--data-dir", "/tmp/x", "--client-addr", "127.0.0.1:1", "--http-addr", "127.0.0.1:2",
		"--gossip-addr", "127.0.0.1:3", "--peer-addr", "127.0.0.1:4", "--join", "127.0.0.1:5,127.0.0.1:6",
		"--replicas", "5", "--r", "3", "--w", "4", "--sloppy=false", "--read-repair-chance", "0.5",
		"--max-hints", "77", "--reconnect-timeout", "3h", "--request-timeout", "3s", "--partitions", "256",
		"--sync=false", "--flush-interval", "250ms", "--sync-window", "300us",
		"--cache-size", "10MB", "--object-cache-size", "1MB", "--memtable-size", "8MB", "--idle-flush", "2s",
		"--max-key-size", "1kb", "--max-value-size", "2kb", "--max-bulk", "3kb", "--max-args", "9",
		"--max-inline", "4kb", "--max-request", "5kb", "--idle-timeout", "7s", "--max-clients", "11",
		"--max-siblings", "7", "--max-object-size", "6kb", "--cluster-key", "s3cret",
		"--procs", "3", "--gc-min-heap", "96MB", "--pprof", "--allow-faults", "--faults", `{"blocked":["n2"],"delays":{"n3":"50ms"}}`, "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Cluster
	if cl == nil {
		t.Fatal("--gossip-addr did not make a cluster member")
	}
	got := map[string]any{
		"name": cfg.Name, "data-dir": cfg.DataDir, "client-addr": cfg.ClientAddr, "http-addr": cfg.HTTPAddr,
		"gossip-addr": cl.GossipAddr, "peer-addr": cl.PeerAddr, "join": strings.Join(cl.Join, " "),
		"replicas": cl.Replicas, "r": cl.R, "w": cl.W, "sloppy": !cl.Strict, "read-repair-chance": cl.ReadRepairChance,
		"max-hints": cfg.MaxHints, "reconnect-timeout": cl.ReconnectTimeout, "request-timeout": cl.Timeout,
		"partitions": cfg.Partitions, "sync": cfg.Sync, "flush-interval": cfg.FlushInterval, "sync-window": cfg.SyncWindow,
		"cache-size": cfg.CacheSize, "object-cache-size": cfg.ObjectCacheSize, "memtable-size": cfg.MemTableSize, "idle-flush": cfg.IdleFlush,
		"max-key-size": cfg.Server.MaxKeySize, "max-value-size": cfg.Server.MaxValueSize, "max-bulk": cfg.Server.Limits.MaxBulk,
		"max-args": cfg.Server.Limits.MaxArgs, "max-inline": cfg.Server.Limits.MaxInline, "max-request": cfg.Server.Limits.MaxRequest,
		"idle-timeout": cfg.Server.IdleTimeout, "max-clients": cfg.Server.MaxClients,
		"max-siblings": cfg.Objects.MaxSiblings, "max-object-size": cfg.Objects.MaxSize, "cluster-key": string(cl.Key),
		"procs": ps.procs, "gc-min-heap": ps.gcMinHeap, "pprof": cfg.Pprof, "allow-faults": cfg.AllowFaults, "faults": cfg.Faults.String(), "log-level": cfg.Logger.Enabled(t.Context(), -4),
	}
	want := map[string]any{
		"name": "n9", "data-dir": "/tmp/x", "client-addr": "127.0.0.1:1", "http-addr": "127.0.0.1:2",
		"gossip-addr": "127.0.0.1:3", "peer-addr": "127.0.0.1:4", "join": "127.0.0.1:5 127.0.0.1:6",
		"replicas": 5, "r": 3, "w": 4, "sloppy": false, "read-repair-chance": 0.5,
		"max-hints": 77, "reconnect-timeout": 3 * time.Hour, "request-timeout": 3 * time.Second,
		"partitions": 256, "sync": false, "flush-interval": 250 * time.Millisecond, "sync-window": 300 * time.Microsecond,
		"cache-size": int64(10 << 20), "object-cache-size": int64(1 << 20), "memtable-size": uint64(8 << 20), "idle-flush": 2 * time.Second,
		"max-key-size": 1 << 10, "max-value-size": 2 << 10, "max-bulk": 3 << 10,
		"max-args": 9, "max-inline": 4 << 10, "max-request": 5 << 10,
		"idle-timeout": 7 * time.Second, "max-clients": 11, "max-siblings": 7, "max-object-size": 6 << 10, "cluster-key": string(wire.ClusterKey("s3cret")),
		"procs": 3, "gc-min-heap": uint64(96 << 20), "pprof": true, "allow-faults": true, "faults": "blocks n2; delays n3 50ms", "log-level": true,
	}
	for _, f := range nodeCommand().Flags {
		name := f.Names()[0]
		if _, ok := want[name]; !ok {
			t.Errorf("--%s is not checked here: add it", name)
		}
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("--%s: config has %v (%T), want %v (%T)", k, g, g, w, w)
		}
	}
	// Values nodeConfig itself refuses.
	for _, args := range [][]string{
		{"--partitions", "0"}, {"--join", "127.0.0.1:5"}, {"--gossip-addr", "127.0.0.1:3", "--reconnect-timeout", "-1s"},
		{"--cache-size", "lots"}, {"--log-level", "loud"}, {"--procs", "-1"}, {"--procs", "1025"}, {"--procs", "two"},
		{"--gc-min-heap", "-1MB"}, {"--gc-min-heap", "some"},
		{"--gossip-addr", "127.0.0.1:3", "--request-timeout", "-1s"},
		{"--max-siblings", "-1"}, {"--max-object-size", "huge"}, {"--cluster-key", "k"},
		{"--faults", `{"blocked":["n2"]}`}, {"--allow-faults", "--faults", `{"blocked":["*"]}`}, {"--allow-faults", "--faults", "n2"},
	} {
		if _, err := parseNodeFlags(t, args...); err == nil {
			t.Errorf("rumor node %v: no error", args)
		}
	}
}

// TestObjectLimitFlags: 0 turns a bound off (the node's negative), and
// neither flag given leaves the node's defaults (its zero).
func TestObjectLimitFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want node.ObjectLimits
	}{
		{nil, node.ObjectLimits{MaxSiblings: node.DefaultMaxSiblings}},
		{[]string{"--max-siblings", "0", "--max-object-size", "0"}, node.ObjectLimits{MaxSiblings: -1, MaxSize: -1}},
		{[]string{"--max-object-size", "32MB"}, node.ObjectLimits{MaxSiblings: node.DefaultMaxSiblings, MaxSize: 32 << 20}},
	} {
		cfg, err := parseNodeFlags(t, tt.args...)
		if err != nil || cfg.Objects != tt.want {
			t.Errorf("rumor node %v: objects %+v, %v; want %+v", tt.args, cfg.Objects, err, tt.want)
		}
	}
}

// TestHelpShowsEachFlagsOwnPlaceholder: urfave/cli takes the first
// back-quoted text of a flag's usage as the placeholder of its value, so a
// usage quoting a command in back quotes turned `--procs value` into
// `--procs rumor cluster up` in rumor node --help.
func TestHelpShowsEachFlagsOwnPlaceholder(t *testing.T) {
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			name := path + " " + cmd.Name
			for _, f := range cmd.Flags {
				df, ok := f.(cli.DocGenerationFlag)
				if !ok {
					continue
				}
				if u := df.GetUsage(); strings.Contains(u, "`") {
					t.Errorf("%s --%s: usage has a back quote, which help shows as the value's placeholder: %q", name, f.Names()[0], u)
				}
			}
			walk(name, cmd.Subcommands)
		}
	}
	app := newApp()
	walk(app.Name, app.Commands)
	if len(app.Commands) == 0 {
		t.Fatal("newApp has no commands")
	}
}
