package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rumor-kv/rumor/gossip"
	"github.com/rumor-kv/rumor/node"
	"github.com/rumor-kv/rumor/wire"
	"github.com/urfave/cli/v2"
)

// The local cluster: `rumor cluster up` starts nodes as separate OS
// processes and writes their addresses and pids to DIR/cluster.json; the
// other subcommands find the cluster through that file.

type clusterNode struct {
	Name       string   `json:"name"`
	PID        int      `json:"pid"`
	ClientAddr string   `json:"client_addr"`
	HTTPAddr   string   `json:"http_addr"`
	GossipAddr string   `json:"gossip_addr"`
	PeerAddr   string   `json:"peer_addr"`
	DataDir    string   `json:"data_dir"`
	Log        string   `json:"log"`
	Args       []string `json:"args"`
	Extra      []string `json:"extra,omitempty"` // --procs and the --node-arg flags, passed on to added nodes
	// Quorum is the small-cluster flags (smallClusterQuorum) the node runs
	// with, chosen by up or add for the cluster's size then; in Args, not
	// in Extra: add chooses them again for the cluster's new size.
	Quorum  []string `json:"quorum,omitempty"`
	Removed bool     `json:"removed,omitempty"`
}

type clusterState struct {
	BasePort int            `json:"base_port"`
	Nodes    []*clusterNode `json:"nodes"`
	Faults   *faultSpec     `json:"faults,omitempty"` // see faults.go
	// Key is the cluster's secret, made by up and given to every node it
	// starts through RUMOR_CLUSTER_KEY (not on their command lines, which
	// any user of the machine can read). Empty in a state written before
	// there were keys: its nodes run without one.
	Key string `json:"cluster_key,omitempty"`
}

func clusterCommand() *cli.Command {
	dir := &cli.StringFlag{Name: "dir", Value: "./.rumor-cluster", EnvVars: env("cluster-dir"), Usage: "directory holding the cluster's state, data and logs"}
	return &cli.Command{
		Name:  "cluster",
		Usage: "run and control a cluster of rumor nodes as processes on this machine",
		// A command that changes the cluster finishes its work when its
		// output goes nowhere (`rumor cluster heal | head -1`): by default
		// Go exits on the first write to a closed pipe, which left faults
		// applied to some nodes and not others, and state half saved.
		// Asking for SIGPIPE turns that exit into a failed write; unlike
		// ignoring it, it is not inherited by the nodes started.
		Before: func(*cli.Context) error {
			signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
			return nil
		},
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "start N nodes (n1..nN), wait until every node sees all members, print their addresses",
				Flags: []cli.Flag{dir,
					&cli.IntFlag{Name: "nodes", Value: 3, Usage: "how many nodes"},
					&cli.IntFlag{Name: "base-port", Value: 7001, Usage: "client port of n1; node i uses P+i-1 (RESP), P+100+i-1 (HTTP), P+200+i-1 (gossip), P+300+i-1 (peer)"},
					&cli.IntFlag{Name: "procs", Usage: "each node's --procs (GOMAXPROCS); 0: this machine's CPUs shared among the nodes, at least one each (the nodes share the CPUs anyway: more threads than CPUs only add scheduling)"},
					&cli.StringSliceFlag{Name: "node-arg", Usage: "extra flag for every node, e.g. --node-arg=--sync=false"},
				},
				Action: lockedUp(clusterUp),
			},
			{Name: "status", Usage: "show each node: pid, addresses, state as gossip sees it, what it sees of the others, its faults", Flags: []cli.Flag{dir, &cli.BoolFlag{Name: "json", Usage: "print JSON"}}, Action: clusterStatus},
			{Name: "stop", Usage: "stop NODE with SIGTERM (it stays a member, seen as failed)", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: locked(clusterSignal(syscall.SIGTERM))},
			{Name: "kill", Usage: "kill NODE with SIGKILL", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: locked(clusterSignal(syscall.SIGKILL))},
			{Name: "start", Usage: "restart a stopped NODE with its data; it rejoins by itself", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: locked(clusterStart)},
			{Name: "add", Usage: "start one more node that joins the cluster", Flags: []cli.Flag{dir}, Action: locked(clusterAdd)},
			{Name: "remove", Usage: "remove NODE from the cluster for good: a running node leaves and exits, a stopped one is forgotten", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: locked(clusterRemove)},
			{Name: "down", Usage: "stop every node (SIGTERM)", Flags: []cli.Flag{dir}, Action: locked(clusterDown)},
			{Name: "partition", Usage: "split the cluster into groups that cannot reach each other (nodes not named form one more group): gossip and peer traffic between groups vanishes, calls time out",
				ArgsUsage: "GROUP GROUP... (a group is node names separated by commas, e.g. n1,n2 n3)", Flags: []cli.Flag{dir}, Action: locked(faultCommand(partitionFaults))},
			{Name: "isolate", Usage: "cut NODE off from every other node", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: locked(faultCommand(isolateFaults))},
			{Name: "delay", Usage: "delay all traffic from every other node to NODE and from NODE by DURATION (0 removes it)", ArgsUsage: "NODE DURATION", Flags: []cli.Flag{dir}, Action: locked(faultCommand(delayFaults))},
			{Name: "heal", Usage: "remove every partition and delay", Flags: []cli.Flag{dir}, Action: locked(faultCommand(healFaults))},
		},
	}
}

func statePath(dir string) string { return filepath.Join(dir, "cluster.json") }

// nodeArgs returns the NODE argument and the state directory, accepting
// --dir after NODE too (rumor cluster kill n2 --dir d), which urfave/cli
// leaves among the arguments.
func nodeArgs(c *cli.Context) (node, dir string, err error) {
	args, dir, err := positionals(c)
	switch {
	case err != nil:
		return "", "", err
	case len(args) == 0:
		return "", "", errors.New("name the node, e.g. n2")
	case len(args) > 1:
		return "", "", fmt.Errorf("unexpected argument %q", args[1])
	}
	return args[0], dir, nil
}

// locked runs a command that changes the cluster (its processes or its
// state file) holding an exclusive lock on the cluster's directory, so
// that two such commands at once (two `start`s from two terminals) do not
// each save what they read before the other's change, losing a node's pid.
// The lock is the kernel's (flock): a command that dies drops it.
func locked(action cli.ActionFunc) cli.ActionFunc { return lockDir(false, action) }

// lockedUp is locked for `up`, which makes the directory first (0700:
// it will hold the cluster key) when it does not exist yet, so that it
// holds the lock from before it writes cluster.json until its nodes run:
// without it, an `add` run meanwhile started a node that up's cluster.json
// then did not list. Its arguments are checked first, so that a refused
// up leaves no directory behind.
func lockedUp(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if _, _, err := upArgs(c); err != nil {
			return err
		}
		return lockDir(true, action)(c)
	}
}

// lockDir is locked; with create, it makes the directory if need be.
// The action reads the cluster's state itself, under the lock.
func lockDir(create bool, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		_, dir, err := positionals(c) // --dir may come after a NODE argument
		if err != nil {
			return err
		}
		if create {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
		} else if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return action(c) // no cluster there: the action says so
		}
		f, err := os.OpenFile(filepath.Join(dir, "cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			fmt.Fprintf(os.Stderr, "waiting for another rumor cluster command on %s to finish\n", dir)
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
				return fmt.Errorf("lock %s: %w", f.Name(), err)
			}
		}
		return action(c)
	}
}

// errNoCluster: the directory holds no cluster.json.
var errNoCluster = errors.New("no cluster")

func loadState(dir string) (*clusterState, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: start one with `rumor cluster up --dir %s`", errNoCluster, dir, dir)
	}
	if err != nil {
		return nil, err
	}
	var st clusterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s cannot be read (%w): it lists the cluster's nodes, which may be running; "+
			"find them with `pgrep -af 'rumor node.*%s'`, stop them, then remove the file (their data stays in %s)", statePath(dir), err, dir, dir)
	}
	return &st, nil
}

// heldDataDirs lists the node data directories under dir whose lock a
// process holds: nodes running there, whatever cluster.json says.
func heldDataDirs(dir string) []string {
	locks, _ := filepath.Glob(filepath.Join(dir, "*", "LOCK"))
	var held []string
	for _, l := range locks {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		// pebble's lock: fcntl F_SETLK, which another process's holds.
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err == nil && lk.Type != syscall.F_UNLCK {
			held = append(held, filepath.Dir(l))
		}
		f.Close()
	}
	return held
}

func (st *clusterState) save(dir string) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil { // it holds the cluster key
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

func (st *clusterState) node(name string) (*clusterNode, error) {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q in the cluster", name)
}

// namedNode loads the cluster state and finds the node the command names.
func namedNode(c *cli.Context) (*clusterState, *clusterNode, string, error) {
	name, dir, err := nodeArgs(c)
	if err != nil {
		return nil, nil, "", err
	}
	st, err := loadState(dir)
	if err != nil {
		return nil, nil, "", err
	}
	nd, err := st.node(name)
	if err != nil {
		return nil, nil, "", err
	}
	return st, nd, dir, nil
}

// waitExit waits up to 30s for a node's process to exit.
func waitExit(nd *clusterNode, after string) error {
	for deadline := time.Now().Add(30 * time.Second); running(nd); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still runs 30s after %s", nd.Name, nd.PID, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// running reports whether nd's process runs: its pid is alive and is
// still this node (a rumor node on nd's data directory), not another
// process that was given the pid after the node exited (pids wrap: this
// machine's go round in a day of tests).
func running(nd *clusterNode) bool {
	if !alive(nd.PID) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", nd.PID))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) // no procfs: trust kill; gone meanwhile: not running
	}
	if len(cmdline) == 0 {
		// Exiting: its main thread is a zombie, and alive saw other
		// threads. Or a kernel thread that took the pid over: those have
		// no command line either.
		return !kernelThread(nd.PID)
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--data-dir" && args[i+1] == nd.DataDir {
			return true
		}
	}
	return false
}

// kernelThread reports whether pid is a kernel thread (PF_KTHREAD in the
// flags of /proc/PID/stat, the 9th field).
func kernelThread(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&0x00200000 != 0
}

// alive reports whether process pid runs: a zombie, exited but not yet
// reaped by its parent, does not. Every thread counts: a killed process's
// main thread turns zombie while the others may still be exiting, and
// until the last of them has, the process holds its files and their
// locks (the data directory's among them; a thread waiting for an fsync
// in flight can take milliseconds).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true // no procfs: trust kill
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z' {
			return true
		}
	}
	return false
}

// newNode describes node i (1-based) of a cluster at base port p.
func newNode(dir string, p, i int, join string, quorum, extra []string) *clusterNode {
	name := fmt.Sprint("n", i)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the node may be restarted from another working directory
	}
	addr := func(off int) string { return "127.0.0.1:" + strconv.Itoa(p+off+i-1) }
	n := &clusterNode{Name: name, ClientAddr: addr(0), HTTPAddr: addr(100), GossipAddr: addr(200), PeerAddr: addr(300),
		DataDir: filepath.Join(dir, name), Log: filepath.Join(dir, name+".log"), Extra: extra, Quorum: quorum}
	n.Args = []string{"node", "--name", name, "--data-dir", n.DataDir, "--client-addr", n.ClientAddr,
		"--http-addr", n.HTTPAddr, "--gossip-addr", n.GossipAddr, "--peer-addr", n.PeerAddr, "--allow-faults"}
	n.Args = append(append(n.Args, quorum...), extra...) // the user's --node-arg after quorum: it wins
	if join != "" {
		n.Args = append(n.Args, "--join", join)
	}
	return n
}

// launch starts n as a detached process (its own session, so it outlives
// this command and a terminal's signals), logging to n.Log, with args
// after n.Args for this run only.
func launch(n *clusterNode, key string, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(exe, append(slices.Clone(n.Args), args...)...)
	if key != "" {
		cmd.Env = append(os.Environ(), "RUMOR_CLUSTER_KEY="+key) // the last of a name wins
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.PID = cmd.Process.Pid
	go cmd.Wait() // reap it if it exits while we are still running
	return nil
}

// maxClusterNodes is the most nodes `cluster up` and `add` run: each kind
// of port (RESP, HTTP, gossip, peer) has a block of 100 from the base.
const maxClusterNodes = 100

// smallClusterQuorum is the node flags of a cluster of fewer than three
// nodes: N no larger than the nodes (a key needs N distinct nodes), and R
// and W a majority of it, so that it serves with the defaults instead of
// refusing every request ("W=2 exceeds the 1 replicas of the key").
func smallClusterQuorum(nodes int) []string {
	if nodes >= 3 {
		return nil
	}
	q := strconv.Itoa(nodes/2 + 1)
	return []string{"--replicas=" + strconv.Itoa(nodes), "--r=" + q, "--w=" + q}
}

// checkFree checks that nd's ports are free: TCP for each, and UDP for
// gossip, which memberlist binds both ways (a node whose UDP gossip port
// was taken exited on start).
func checkFree(nd *clusterNode) error {
	for _, a := range []string{nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr, nd.PeerAddr} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("address %s is not free (another cluster? choose --base-port): %w", a, err)
		}
		l.Close()
	}
	u, err := net.ListenPacket("udp", nd.GossipAddr)
	if err != nil {
		return fmt.Errorf("address %s is not free for UDP (gossip; another cluster? choose --base-port): %w", nd.GossipAddr, err)
	}
	u.Close()
	return nil
}

// upArgs checks up's --nodes and --base-port and returns them.
func upArgs(c *cli.Context) (n, p int, err error) {
	n, p = c.Int("nodes"), c.Int("base-port")
	if n < 1 || n > maxClusterNodes {
		return 0, 0, fmt.Errorf("--nodes must be between 1 and %d (each kind of port has a block of %d), not %d", maxClusterNodes, maxClusterNodes, n)
	}
	if p < 1024 || p+300+n-1 > 65535 {
		return 0, 0, fmt.Errorf("--base-port must be between 1024 and %d for %d nodes (ports P to P+%d), not %d", 65535-300-n+1, n, 300+n-1, p)
	}
	if c.Int("procs") < 0 {
		return 0, 0, fmt.Errorf("--procs must not be negative")
	}
	return n, p, nil
}

func clusterUp(c *cli.Context) error {
	dir := c.String("dir")
	n, p, err := upArgs(c)
	if err != nil {
		return err
	}
	old, err := loadState(dir)
	switch {
	case err == nil:
		for _, nd := range old.Nodes {
			if running(nd) {
				return fmt.Errorf("a cluster is already running in %s (%s, pid %d): `rumor cluster down --dir %s` first", dir, nd.Name, nd.PID, dir)
			}
		}
	case !errors.Is(err, errNoCluster):
		return err // a damaged cluster.json: its nodes may run, and a new one would lose them
	}
	if held := heldDataDirs(dir); len(held) > 0 {
		return fmt.Errorf("a node is running on %s, which cluster.json does not list as running: stop it first (`pgrep -af 'rumor node.*%s'`)", held[0], held[0])
	}
	if old != nil {
		return restartCluster(c, dir, old)
	}
	procs := c.Int("procs")
	if procs == 0 {
		procs = shareProcs(runtime.NumCPU(), n)
	}
	// Before the user's --node-arg flags, so that a --node-arg=--procs=K
	// there wins; kept with them so that `cluster add` passes it on.
	extra := append([]string{"--procs=" + strconv.Itoa(procs)}, c.StringSlice("node-arg")...)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var secret [16]byte
	rand.Read(secret[:])
	st := &clusterState{BasePort: p, Key: hex.EncodeToString(secret[:])}
	for i := 1; i <= n; i++ {
		join := ""
		if i > 1 {
			join = st.Nodes[0].GossipAddr
		}
		nd := newNode(dir, p, i, join, smallClusterQuorum(n), extra)
		if err := checkFree(nd); err != nil {
			return err
		}
		st.Nodes = append(st.Nodes, nd)
	}
	for i, nd := range st.Nodes {
		if err := launch(nd, st.Key); err != nil {
			return err
		}
		if err := st.save(dir); err != nil {
			return err
		}
		if i == 0 { // the others join through n1's gossip port
			if err := waitServing(nd, 30*time.Second); err != nil {
				return err
			}
		}
	}
	if err := waitMembers(st.Nodes, n, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("rumor cluster of %d nodes is up (state in %s):\n\n", n, statePath(dir))
	printUp(st, dir)
	return nil
}

func printUp(st *clusterState, dir string) {
	printTable(st, nil)
	first := st.Nodes[slices.IndexFunc(st.Nodes, func(nd *clusterNode) bool { return !nd.Removed })]
	fmt.Printf("\nconnect: redis-cli -p %s   |   nc 127.0.0.1 %s   |   curl http://%s/cluster\n",
		port(first.ClientAddr), port(first.ClientAddr), first.HTTPAddr)
	fmt.Printf("control: rumor cluster status|stop|kill|start|add|remove|partition|isolate|delay|heal|down --dir %s\n", dir)
}

// restartCluster is `up` on the directory of a cluster that is down: it
// starts again every node of st not removed, on its data, with its saved
// ports and arguments and the cluster's key, and applies the cluster's
// faults again. (It rebuilt n1..nN from scratch: a removed node came
// back a member with stale data, an added one stayed down, and the nodes
// lost their arguments and key.) Flags that would make another cluster
// are refused with what cluster.json holds.
func restartCluster(c *cli.Context, dir string, st *clusterState) error {
	var nodes []*clusterNode
	for _, nd := range st.Nodes {
		if !nd.Removed {
			nodes = append(nodes, nd)
		}
	}
	var conflicts []string
	if c.IsSet("nodes") && c.Int("nodes") != len(nodes) {
		conflicts = append(conflicts, fmt.Sprintf("--nodes %d", c.Int("nodes")))
	}
	if c.IsSet("base-port") && c.Int("base-port") != st.BasePort {
		conflicts = append(conflicts, fmt.Sprintf("--base-port %d", c.Int("base-port")))
	}
	for _, f := range []string{"procs", "node-arg"} {
		if c.IsSet(f) {
			conflicts = append(conflicts, "--"+f+" (its nodes restart with the arguments they were started with)")
		}
	}
	if len(nodes) == 0 || len(conflicts) > 0 {
		holds := fmt.Sprintf("%s holds a cluster of %d nodes (%s) at base port %d", statePath(dir), len(nodes), strings.Join(st.members(), ", "), st.BasePort)
		if len(nodes) == 0 {
			holds = fmt.Sprintf("%s holds a cluster whose nodes were all removed", statePath(dir))
		} else {
			holds += fmt.Sprintf(", which `rumor cluster up --dir %s` starts again as it was, not with %s", dir, strings.Join(conflicts, ", "))
		}
		return fmt.Errorf("%s; for a new cluster, remove the directory first (`rm -rf %s`: the nodes' data goes with it) or choose another --dir", holds, dir)
	}
	for _, nd := range nodes {
		if err := checkFree(nd); err != nil {
			return fmt.Errorf("%s: %w", nd.Name, err)
		}
	}
	for i, nd := range nodes {
		if err := launch(nd, st.Key); err != nil {
			return err
		}
		if err := st.save(dir); err != nil {
			return err
		}
		if i == 0 { // as up: the first serves before the others rejoin
			if err := waitServing(nd, 30*time.Second); err != nil {
				return err
			}
		}
	}
	if err := waitMembers(nodes, len(nodes), 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("rumor cluster of %d nodes is up again on its data (state in %s):\n\n", len(nodes), statePath(dir))
	printUp(st, dir)
	return reapplyFaults(st)
}

// shareProcs is each of n nodes' share of cpus CPUs, at least one. Nodes
// on one machine each running a thread per CPU (Go's default) keep more
// threads runnable than there are CPUs, and the kernel's time slicing
// between them shows as latency and as CPU spent scheduling: on 2 CPUs, 3
// nodes with GOMAXPROCS=1 spent 80 µs of CPU a durable SET instead of 112
// and served 0.25x of redis instead of 0.19x; without --sync, throughput
// was within noise (make bench-cluster; docs/performance.md).
func shareProcs(cpus, n int) int {
	return max(1, cpus/max(n, 1))
}

// respCommand sends one command to a node and returns its reply.
func respCommand(addr string, args ...string) (wire.Value, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return wire.Value{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	var req []byte
	req = wire.AppendArray(req, len(args))
	for _, a := range args {
		req = wire.AppendBulkString(req, a)
	}
	if _, err := conn.Write(req); err != nil {
		return wire.Value{}, err
	}
	var buf []byte
	r := bufio.NewReader(conn)
	tmp := make([]byte, 4096)
	for {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if v, used, perr := wire.ParseReply(buf); perr != nil {
			return wire.Value{}, perr
		} else if used > 0 {
			return v, nil
		}
		if err != nil {
			return wire.Value{}, err
		}
	}
}

// logTail returns the last n lines of the log at path, indented, or why
// it could not be read: what a node said before it exited.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
}

func waitServing(n *clusterNode, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if v, err := respCommand(n.ClientAddr, "PING"); err == nil && string(v.Str) == "PONG" && running(n) {
			return nil // and the answer was not another process's on that port: ours still runs
		}
		if !running(n) {
			return fmt.Errorf("%s exited; the end of %s:\n%s", n.Name, n.Log, logTail(n.Log, 8))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v; see %s", n.Name, d, n.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gossipStates asks a node's INFO cluster for the members' states.
func gossipStates(addr string) (map[string]string, error) {
	v, err := respCommand(addr, "INFO", "cluster")
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	re := regexp.MustCompile(`member_(\S+?):status=(\w+)`)
	for _, m := range re.FindAllStringSubmatch(string(v.Str), -1) {
		states[m[1]] = m[2]
	}
	return states, nil
}

func waitMembers(nodes []*clusterNode, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, nd := range nodes {
		if err := waitServing(nd, time.Until(deadline)); err != nil {
			return err
		}
		for {
			states, _ := gossipStates(nd.ClientAddr)
			up := 0
			for _, s := range states {
				if s == "alive" {
					up++
				}
			}
			if up >= n {
				break
			}
			for _, other := range nodes { // one that exited will not join: say so now
				if !running(other) {
					return fmt.Errorf("%s exited; the end of %s:\n%s", other.Name, other.Log, logTail(other.Log, 8))
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s sees %d of %d members alive after %v: %v", nd.Name, up, n, d, states)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// nodeStatus is one node as status shows it.
type nodeStatus struct {
	*clusterNode
	Running bool `json:"running"`
	// State is the node's state as the other running nodes see it;
	// "alive/failed" when they disagree (most common first).
	State string `json:"state"`
	// View is the members' states as this node sees them.
	View map[string]string `json:"view,omitempty"`
	// Faults are the faults as this node reports them.
	Faults      *node.FaultsView `json:"faults,omitempty"`
	FaultsError string           `json:"faults_error,omitempty"`
}

// collectStatus asks every running node for its view and its faults.
func collectStatus(st *clusterState) []nodeStatus {
	var rows []nodeStatus
	for _, nd := range st.Nodes {
		r := nodeStatus{clusterNode: nd, Running: running(nd)}
		if r.Running {
			r.View, _ = gossipStates(nd.ClientAddr)
			if v, err := faultsRequest(nd, "GET", nil); err != nil {
				r.FaultsError = err.Error()
			} else {
				r.Faults = &v
			}
		}
		rows = append(rows, r)
	}
	for i := range rows {
		rows[i].State = seenAs(rows, i)
	}
	return rows
}

// seenAs is how the other nodes' views see node i: one state if they
// agree, "alive/failed" (most common first) if not; the node's own view
// if no other node answered, "unknown" if none did.
func seenAs(rows []nodeStatus, i int) string {
	name := rows[i].Name
	count := map[string]int{}
	for j, r := range rows {
		if s, ok := r.View[name]; ok && j != i {
			count[s]++
		}
	}
	if len(count) == 0 {
		if s, ok := rows[i].View[name]; ok {
			return s
		}
		return "unknown"
	}
	states := slices.SortedFunc(maps.Keys(count), func(a, b string) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return strings.Compare(a, b)
	})
	return strings.Join(states, "/")
}

// sees sums up a node's view: the members it does not see alive.
func (r nodeStatus) sees() string {
	if !r.Running {
		return "-"
	}
	if r.View == nil {
		return "?"
	}
	byState := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(r.View)) {
		if s := r.View[name]; s != "alive" {
			byState[s] = append(byState[s], name)
		}
	}
	if len(byState) == 0 {
		return "all alive"
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(byState)) {
		parts = append(parts, strings.Join(byState[s], ",")+" "+s)
	}
	return strings.Join(parts, ", ")
}

func (r nodeStatus) faults() string {
	switch {
	case !r.Running:
		return "-"
	case r.Faults == nil:
		return "?"
	case !r.Faults.Enabled:
		return "disabled"
	}
	return r.Faults.State.String()
}

func printTable(st *clusterState, rows []nodeStatus) {
	if rows == nil {
		rows = collectStatus(st)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPID\tCLIENT (RESP)\tHTTP\tGOSSIP\tPEER\tSTATE\tSEES\tFAULTS")
	for _, r := range rows {
		pid := "-"
		if r.Running {
			pid = strconv.Itoa(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, pid, r.ClientAddr, r.HTTPAddr, r.GossipAddr, r.PeerAddr, r.State, r.sees(), r.faults())
	}
	tw.Flush()
}

func clusterStatus(c *cli.Context) error {
	st, err := loadState(c.String("dir"))
	if err != nil {
		return err
	}
	rows := collectStatus(st)
	summary := st.Faults.summary(st.members())
	if c.Bool("json") {
		out := struct {
			Faults struct {
				Summary string            `json:"summary"`
				Groups  [][]string        `json:"groups,omitempty"` // with the rest
				Delays  map[string]string `json:"delays,omitempty"`
			} `json:"faults"`
			Nodes []nodeStatus `json:"nodes"`
		}{Nodes: rows}
		out.Faults.Summary = summary
		if st.Faults != nil {
			if len(st.Faults.Groups) > 0 {
				out.Faults.Groups = withRest(st.Faults.Groups, st.members())
			}
			out.Faults.Delays = st.Faults.Delays
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	printTable(st, rows)
	fmt.Printf("\nfaults: %s\n(STATE: as the other nodes see the node, alive/failed when they disagree; SEES: the members the node does not see alive; FAULTS: as the node reports them)\n", summary)
	return nil
}

func clusterSignal(sig syscall.Signal) cli.ActionFunc {
	return func(c *cli.Context) error {
		_, nd, _, err := namedNode(c)
		if err != nil {
			return err
		}
		if !running(nd) {
			return fmt.Errorf("%s is not running", nd.Name)
		}
		if err := syscall.Kill(nd.PID, sig); err != nil {
			return err
		}
		if err := waitExit(nd, sig.String()); err != nil {
			return err
		}
		fmt.Printf("%s (pid %d) %s\n", nd.Name, nd.PID, map[syscall.Signal]string{syscall.SIGTERM: "stopped", syscall.SIGKILL: "killed"}[sig])
		return nil
	}
}

func clusterStart(c *cli.Context) error {
	st, nd, dir, err := namedNode(c)
	if err != nil {
		return err
	}
	if running(nd) {
		return fmt.Errorf("%s is already running (pid %d)", nd.Name, nd.PID)
	}
	if nd.Removed {
		return fmt.Errorf("%s was removed from the cluster; `rumor cluster add` starts a new node", nd.Name)
	}
	// A node restarted into a partition starts with its faults: set
	// after it served, they came after its first gossip, and it met the
	// other side (a review saw it list the big side alive).
	var faults []string
	if fs := nodeFaults(st.Faults, st.members())[nd.Name]; !fs.Empty() {
		b, err := json.Marshal(fs)
		if err != nil {
			return err
		}
		faults = []string{"--faults", string(b)}
	}
	if err := launch(nd, st.Key, faults...); err != nil {
		return err
	}
	if err := st.save(dir); err != nil {
		return err
	}
	if err := waitServing(nd, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("%s started (pid %d); it rejoins the cluster through its gossip snapshot\n", nd.Name, nd.PID)
	return reapplyFaults(st)
}

func clusterAdd(c *cli.Context) error {
	dir := c.String("dir")
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	var join string
	for _, nd := range st.Nodes {
		if running(nd) {
			join = nd.GossipAddr
			break
		}
	}
	if join == "" {
		return errors.New("no node of the cluster is running to join through")
	}
	var extra []string
	if len(st.Nodes) > 0 {
		extra = st.Nodes[0].passedOn()
	}
	// The quorum flags up chose for a small cluster are not passed on:
	// the new node gets those of the cluster's new size (none from three
	// nodes on), and so do the others when they restart. It got node 0's,
	// and a cluster up started with one node kept N=1 whatever its size.
	quorum := smallClusterQuorum(len(st.members()) + 1)
	i := len(st.Nodes) + 1
	if i > maxClusterNodes || st.BasePort+300+i-1 > 65535 {
		return fmt.Errorf("the cluster has %d nodes: with base port %d, node %d's ports would overlap another node's or pass 65535", len(st.Nodes), st.BasePort, i)
	}
	nd := newNode(dir, st.BasePort, i, join, quorum, extra)
	if err := checkFree(nd); err != nil {
		return err
	}
	if err := launch(nd, st.Key); err != nil {
		return err
	}
	// Saved before it serves, so that the node is not lost if this
	// command is interrupted meanwhile; dropped again if it fails, so
	// that a node that never joined is not left a member (status showed
	// it "unknown", and the next add counted it).
	st.Nodes = append(st.Nodes, nd)
	err = st.save(dir)
	if err == nil {
		err = waitServing(nd, 30*time.Second)
	}
	if err != nil {
		return abandon(st, dir, nd, err)
	}
	fmt.Printf("%s added (pid %d): client %s, http %s, gossip %s\n", nd.Name, nd.PID, nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr)
	for _, other := range st.Nodes {
		if other != nd && !other.Removed {
			other.setQuorum(quorum)
		}
	}
	if err := st.save(dir); err != nil {
		return err
	}
	smallerN(st, nd, dir)
	return reapplyFaults(st)
}

// passedOn is the flags add gives a new node from nd: its Extra, without
// the small-cluster quorum flags that a cluster.json written before
// Quorum existed kept there (after --procs, where up put them).
func (nd *clusterNode) passedOn() []string {
	e := nd.Extra
	if nd.Quorum == nil && len(e) >= 4 && strings.HasPrefix(e[0], "--procs=") {
		for _, k := range []int{1, 2} {
			if slices.Equal(e[1:4], smallClusterQuorum(k)) {
				return append(slices.Clip(e[:1]), e[4:]...)
			}
		}
	}
	return e
}

// setQuorum makes q the small-cluster quorum flags nd restarts with, in
// place of those it was started with (the user's --node-arg flags stay,
// and still win). The running process keeps its own.
func (nd *clusterNode) setQuorum(q []string) {
	old := nd.Quorum
	if pe := nd.passedOn(); old == nil && len(pe) != len(nd.Extra) {
		old, nd.Extra = nd.Extra[1:4], pe // a cluster.json from before Quorum
	}
	if slices.Equal(old, q) {
		return
	}
	args := slices.Clone(nd.Args)
	at := slices.Index(args, "--allow-faults") + 1
	if at == 0 {
		at = slices.Index(args, "node") + 1
	}
	for _, f := range old { // the first of each: quorum comes before Extra
		if i := slices.Index(args, f); i >= 0 {
			args = slices.Delete(args, i, i+1)
			at = min(at, i)
		}
	}
	nd.Args = slices.Insert(args, at, q...)
	nd.Quorum = q
}

var replicasField = regexp.MustCompile(`(?m)^replicas_n:(\d+)\r?$`)

// replicasOf asks the node at addr for its N; 0 if it does not answer.
func replicasOf(addr string) int {
	v, err := respCommand(addr, "INFO", "cluster")
	if err != nil {
		return 0
	}
	m := replicasField.FindSubmatch(v.Str)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// smallerN notes the running nodes whose N is smaller than that of added,
// the node just added: they were started when the cluster was smaller.
func smallerN(st *clusterState, added *clusterNode, dir string) {
	want := replicasOf(added.ClientAddr)
	var smaller []string
	for _, nd := range st.Nodes {
		if nd == added || !running(nd) {
			continue
		}
		if n := replicasOf(nd.ClientAddr); n > 0 && n < want {
			smaller = append(smaller, fmt.Sprintf("%s (N=%d)", nd.Name, n))
		}
	}
	if len(smaller) == 0 {
		return
	}
	fmt.Printf("note: %s still run with the smaller N chosen for the cluster's size when they started; %s runs with N=%d. "+
		"A node's N, R and W are fixed until it restarts (the writes it coordinates keep that many copies): "+
		"`rumor cluster stop NODE --dir %s` and then `start NODE` give it %s's\n",
		strings.Join(smaller, ", "), added.Name, want, dir, added.Name)
}

// abandon undoes the add of nd, the last of st's nodes, which failed
// with err: it kills nd's process if it runs and drops nd from st.
func abandon(st *clusterState, dir string, nd *clusterNode, err error) error {
	if running(nd) {
		syscall.Kill(nd.PID, syscall.SIGKILL)
		if werr := waitExit(nd, "SIGKILL"); werr != nil {
			return fmt.Errorf("%w; and %s could not be stopped: %v", err, nd.Name, werr)
		}
	}
	st.Nodes = st.Nodes[:len(st.Nodes)-1]
	if serr := st.save(dir); serr != nil {
		return fmt.Errorf("%w; and %s could not be dropped from %s: %v", err, nd.Name, statePath(dir), serr)
	}
	return fmt.Errorf("%w\n%s was not added (its data directory %s is kept)", err, nd.Name, nd.DataDir)
}

func clusterRemove(c *cli.Context) error {
	name, dir, err := nodeArgs(c)
	if err != nil {
		return err
	}
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	nd, err := st.node(name)
	unlisted := err != nil
	if unlisted {
		// Not one of this directory's nodes, but perhaps a member the
		// nodes' data remembers (`cluster up` with fewer nodes on the
		// directory of a bigger cluster; a node joined by hand): the
		// running nodes forget it, if they know it.
		nd = &clusterNode{Name: name}
	}
	var others []*clusterNode // the running nodes that must drop it
	for _, o := range st.Nodes {
		if o != nd && running(o) {
			others = append(others, o)
		}
	}
	if running(nd) {
		if len(others) == 0 {
			// Its leave would reach no one, and serf's Leave answers nil
			// all the same: the others, started again, kept it failed.
			return fmt.Errorf("%s is the only node of the cluster running: no other would learn that it left; "+
				"start another node first (`rumor cluster start NODE --dir %s`)", nd.Name, dir)
		}
		// The node may exit before its +OK reaches us (a reset): if it
		// exits, it has left.
		if v, err := respCommand(nd.ClientAddr, "CLUSTER", "LEAVE"); (err == nil && v.Kind == wire.Error) || (err != nil && waitExit(nd, "leaving") != nil) {
			return fmt.Errorf("%s did not leave: %v %s", nd.Name, err, v.Str)
		}
		if err := waitExit(nd, "leaving"); err != nil {
			return err
		}
	} else if len(others) == 0 {
		return errors.New("no running node to tell")
	}
	// A leave that reached no one (the node cut off by a partition) still
	// answers OK, and the others keep the node as failed: each running
	// node that does not list it as gone forgets it, and is checked.
	known, err := forgetEverywhere(others, name, 30*time.Second)
	if unlisted && !known {
		return fmt.Errorf("no node %q in the cluster", name)
	}
	if err != nil {
		return fmt.Errorf("%s does not run, but %w (cluster.json still lists it; `rumor cluster remove %s --dir %s` tries again)", name, err, name, dir)
	}
	if unlisted {
		fmt.Printf("%s removed from the cluster (it was not one of %s's nodes)\n", name, dir)
		return nil
	}
	nd.Removed = true
	if err := st.save(dir); err != nil {
		return err
	}
	fmt.Printf("%s removed from the cluster (its data stays in %s)\n", nd.Name, nd.DataDir)
	return nil
}

// forgetEverywhere makes each of nodes, running, list the member name as
// gone (left, reaped, or not at all): it sends CLUSTER FORGET to each
// that lists it otherwise, once it sees the member failed (a node that
// exited a moment ago is seen failed within seconds), and polls each
// view until d has passed. It reports whether any node knew the member,
// and names the nodes that did not drop it.
func forgetEverywhere(nodes []*clusterNode, name string, d time.Duration) (known bool, err error) {
	deadline := time.Now().Add(d)
	var failures []string
	for _, o := range nodes {
		var last, forgetErr string
		var sent time.Time
		for {
			states, err := gossipStates(o.ClientAddr)
			s, ok := states[name]
			switch {
			case err != nil:
				last = "did not answer: " + err.Error()
			case ok && s != "left" && s != "reaped":
				known = true
				last = "lists it as " + s
				if s == "failed" && time.Since(sent) > time.Second {
					sent = time.Now()
					v, err := respCommand(o.ClientAddr, "CLUSTER", "FORGET", name)
					switch {
					case err != nil:
						forgetErr = err.Error()
					case v.Kind == wire.Error && !strings.Contains(string(v.Str), gossip.ErrUnknownMember.Error()):
						forgetErr = string(v.Str)
					default:
						forgetErr = "" // answered OK: the view shows it next round
					}
				}
			default:
				known = known || ok
				last = ""
			}
			if last == "" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if last != "" {
			if forgetErr != "" {
				last += " (CLUSTER FORGET: " + forgetErr + ")"
			} else if strings.HasSuffix(last, " failed") {
				last += " after CLUSTER FORGET answered OK"
			}
			failures = append(failures, fmt.Sprintf("%s %s", o.Name, last))
		}
	}
	if len(failures) > 0 {
		return known, fmt.Errorf("not every running node dropped it after %v: %s", d, strings.Join(failures, "; "))
	}
	return known, nil
}

func clusterDown(c *cli.Context) error {
	st, err := loadState(c.String("dir"))
	if err != nil {
		return err
	}
	for _, nd := range st.Nodes {
		if running(nd) {
			syscall.Kill(nd.PID, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range st.Nodes {
		for running(nd) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if running(nd) {
			syscall.Kill(nd.PID, syscall.SIGKILL)
		}
	}
	fmt.Printf("cluster in %s is down (data kept: `rumor cluster up --dir %s` starts it again on its data; remove the directory for a new cluster)\n", c.String("dir"), c.String("dir"))
	return nil
}
