package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
	Extra      []string `json:"extra,omitempty"` // the --node-arg flags, passed on to added nodes
	Removed    bool     `json:"removed,omitempty"`
}

type clusterState struct {
	BasePort int            `json:"base_port"`
	Nodes    []*clusterNode `json:"nodes"`
}

func clusterCommand() *cli.Command {
	dir := &cli.StringFlag{Name: "dir", Value: "./.rumor-cluster", EnvVars: env("cluster-dir"), Usage: "directory holding the cluster's state, data and logs"}
	return &cli.Command{
		Name:  "cluster",
		Usage: "run and control a cluster of rumor nodes as processes on this machine",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "start N nodes (n1..nN), wait until every node sees all members, print their addresses",
				Flags: []cli.Flag{dir,
					&cli.IntFlag{Name: "nodes", Value: 3, Usage: "how many nodes"},
					&cli.IntFlag{Name: "base-port", Value: 7001, Usage: "client port of n1; node i uses P+i-1 (RESP), P+100+i-1 (HTTP), P+200+i-1 (gossip), P+300+i-1 (peer)"},
					&cli.StringSliceFlag{Name: "node-arg", Usage: "extra flag for every node, e.g. --node-arg=--sync=false"},
				},
				Action: clusterUp,
			},
			{Name: "status", Usage: "show each node: pid, addresses, state as gossip sees it", Flags: []cli.Flag{dir, &cli.BoolFlag{Name: "json", Usage: "print JSON"}}, Action: clusterStatus},
			{Name: "stop", Usage: "stop NODE with SIGTERM (it stays a member, seen as failed)", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: clusterSignal(syscall.SIGTERM)},
			{Name: "kill", Usage: "kill NODE with SIGKILL", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: clusterSignal(syscall.SIGKILL)},
			{Name: "start", Usage: "restart a stopped NODE with its data; it rejoins by itself", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: clusterStart},
			{Name: "add", Usage: "start one more node that joins the cluster", Flags: []cli.Flag{dir}, Action: clusterAdd},
			{Name: "remove", Usage: "remove NODE from the cluster for good: a running node leaves and exits, a stopped one is forgotten", ArgsUsage: "NODE", Flags: []cli.Flag{dir}, Action: clusterRemove},
			{Name: "down", Usage: "stop every node (SIGTERM)", Flags: []cli.Flag{dir}, Action: clusterDown},
		},
	}
}

func statePath(dir string) string { return filepath.Join(dir, "cluster.json") }

// nodeArgs returns the NODE argument and the state directory, accepting
// --dir after NODE too (rumor cluster kill n2 --dir d), which urfave/cli
// leaves among the arguments.
func nodeArgs(c *cli.Context) (node, dir string, err error) {
	dir = c.String("dir")
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--dir" || a == "-dir":
			if i+1 == len(args) {
				return "", "", errors.New("--dir needs a value")
			}
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "--dir="):
			dir = strings.TrimPrefix(a, "--dir=")
		case node == "":
			node = a
		default:
			return "", "", fmt.Errorf("unexpected argument %q", a)
		}
	}
	if node == "" {
		return "", "", errors.New("name the node, e.g. n2")
	}
	return node, dir, nil
}

func loadState(dir string) (*clusterState, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no cluster in %s: start one with `rumor cluster up --dir %s`", dir, dir)
	}
	if err != nil {
		return nil, err
	}
	var st clusterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return &st, nil
}

func (st *clusterState) save(dir string) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
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
	for deadline := time.Now().Add(30 * time.Second); alive(nd.PID); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still runs 30s after %s", nd.Name, nd.PID, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// alive reports whether process pid runs (a zombie, exited but not yet
// reaped by its parent, does not).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill
	}
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// newNode describes node i (1-based) of a cluster at base port p.
func newNode(dir string, p, i int, join string, extra []string) *clusterNode {
	name := fmt.Sprint("n", i)
	addr := func(off int) string { return "127.0.0.1:" + strconv.Itoa(p+off+i-1) }
	n := &clusterNode{Name: name, ClientAddr: addr(0), HTTPAddr: addr(100), GossipAddr: addr(200), PeerAddr: addr(300),
		DataDir: filepath.Join(dir, name), Log: filepath.Join(dir, name+".log"), Extra: extra}
	n.Args = append([]string{"node", "--name", name, "--data-dir", n.DataDir, "--client-addr", n.ClientAddr,
		"--http-addr", n.HTTPAddr, "--gossip-addr", n.GossipAddr, "--peer-addr", n.PeerAddr}, extra...)
	if join != "" {
		n.Args = append(n.Args, "--join", join)
	}
	return n
}

// launch starts n as a detached process (its own session, so it outlives
// this command and a terminal's signals), logging to n.Log.
func launch(n *clusterNode) error {
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
	cmd := exec.Command(exe, n.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.PID = cmd.Process.Pid
	go cmd.Wait() // reap it if it exits while we are still running
	return nil
}

func checkFree(addrs ...string) error {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("address %s is not free (another cluster? choose --base-port): %w", a, err)
		}
		l.Close()
	}
	return nil
}

func clusterUp(c *cli.Context) error {
	dir, n, p := c.String("dir"), c.Int("nodes"), c.Int("base-port")
	if n < 1 || p < 1024 || p+300+n > 65535 {
		return fmt.Errorf("need --nodes >= 1 and a --base-port that leaves room for %d ports", 4*n)
	}
	if st, err := loadState(dir); err == nil {
		for _, nd := range st.Nodes {
			if alive(nd.PID) {
				return fmt.Errorf("a cluster is already running in %s (%s, pid %d): `rumor cluster down --dir %s` first", dir, nd.Name, nd.PID, dir)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st := &clusterState{BasePort: p}
	for i := 1; i <= n; i++ {
		join := ""
		if i > 1 {
			join = st.Nodes[0].GossipAddr
		}
		nd := newNode(dir, p, i, join, c.StringSlice("node-arg"))
		if err := checkFree(nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr, nd.PeerAddr); err != nil {
			return err
		}
		st.Nodes = append(st.Nodes, nd)
	}
	for i, nd := range st.Nodes {
		if err := launch(nd); err != nil {
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
	if err := waitMembers(st, n, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("rumor cluster of %d nodes is up (state in %s):\n\n", n, statePath(dir))
	printTable(st, nil)
	fmt.Printf("\nconnect: redis-cli -p %s   |   nc 127.0.0.1 %s   |   curl http://%s/cluster\n",
		port(st.Nodes[0].ClientAddr), port(st.Nodes[0].ClientAddr), st.Nodes[0].HTTPAddr)
	fmt.Printf("control: rumor cluster status|stop|kill|start|add|down --dir %s\n", dir)
	return nil
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

func waitServing(n *clusterNode, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if v, err := respCommand(n.ClientAddr, "PING"); err == nil && string(v.Str) == "PONG" {
			return nil
		}
		if !alive(n.PID) {
			return fmt.Errorf("%s exited; see %s", n.Name, n.Log)
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

func waitMembers(st *clusterState, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, nd := range st.Nodes {
		if err := waitServing(nd, time.Until(deadline)); err != nil {
			return err
		}
		for {
			states, _ := gossipStates(nd.ClientAddr)
			alive := 0
			for _, s := range states {
				if s == "alive" {
					alive++
				}
			}
			if alive >= n {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s sees %d of %d members alive after %v: %v", nd.Name, alive, n, d, states)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// states returns the members' states as some running node sees them.
func states(st *clusterState) map[string]string {
	for _, nd := range st.Nodes {
		if alive(nd.PID) {
			if s, err := gossipStates(nd.ClientAddr); err == nil {
				return s
			}
		}
	}
	return nil
}

func printTable(st *clusterState, gs map[string]string) {
	if gs == nil {
		gs = states(st)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPID\tCLIENT (RESP)\tHTTP\tGOSSIP\tPEER\tSTATE")
	for _, nd := range st.Nodes {
		pid := "-"
		if alive(nd.PID) {
			pid = strconv.Itoa(nd.PID)
		}
		state := gs[nd.Name]
		if state == "" {
			state = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", nd.Name, pid, nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr, nd.PeerAddr, state)
	}
	tw.Flush()
}

func clusterStatus(c *cli.Context) error {
	st, err := loadState(c.String("dir"))
	if err != nil {
		return err
	}
	gs := states(st)
	if c.Bool("json") {
		type row struct {
			*clusterNode
			Running bool   `json:"running"`
			State   string `json:"state"`
		}
		var rows []row
		for _, nd := range st.Nodes {
			s := gs[nd.Name]
			if s == "" {
				s = "unknown"
			}
			rows = append(rows, row{nd, alive(nd.PID), s})
		}
		b, _ := json.MarshalIndent(rows, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	printTable(st, gs)
	return nil
}

func clusterSignal(sig syscall.Signal) cli.ActionFunc {
	return func(c *cli.Context) error {
		_, nd, _, err := namedNode(c)
		if err != nil {
			return err
		}
		if !alive(nd.PID) {
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
	if alive(nd.PID) {
		return fmt.Errorf("%s is already running (pid %d)", nd.Name, nd.PID)
	}
	if nd.Removed {
		return fmt.Errorf("%s was removed from the cluster; `rumor cluster add` starts a new node", nd.Name)
	}
	if err := launch(nd); err != nil {
		return err
	}
	if err := st.save(dir); err != nil {
		return err
	}
	if err := waitServing(nd, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("%s started (pid %d); it rejoins the cluster through its gossip snapshot\n", nd.Name, nd.PID)
	return nil
}

func clusterAdd(c *cli.Context) error {
	dir := c.String("dir")
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	var join string
	for _, nd := range st.Nodes {
		if alive(nd.PID) {
			join = nd.GossipAddr
			break
		}
	}
	if join == "" {
		return errors.New("no node of the cluster is running to join through")
	}
	var extra []string
	if len(st.Nodes) > 0 {
		extra = st.Nodes[0].Extra
	}
	nd := newNode(dir, st.BasePort, len(st.Nodes)+1, join, extra)
	if err := checkFree(nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr, nd.PeerAddr); err != nil {
		return err
	}
	if err := launch(nd); err != nil {
		return err
	}
	st.Nodes = append(st.Nodes, nd)
	if err := st.save(dir); err != nil {
		return err
	}
	if err := waitServing(nd, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("%s added (pid %d): client %s, http %s, gossip %s\n", nd.Name, nd.PID, nd.ClientAddr, nd.HTTPAddr, nd.GossipAddr)
	return nil
}

func clusterRemove(c *cli.Context) error {
	st, nd, dir, err := namedNode(c)
	if err != nil {
		return err
	}
	if alive(nd.PID) {
		if v, err := respCommand(nd.ClientAddr, "CLUSTER", "LEAVE"); err != nil || v.Kind == wire.Error {
			return fmt.Errorf("%s did not leave: %v %s", nd.Name, err, v.Str)
		}
		if err := waitExit(nd, "leaving"); err != nil {
			return err
		}
	} else {
		var done bool
		for _, other := range st.Nodes {
			if other == nd || !alive(other.PID) {
				continue
			}
			// A node killed a moment ago is still alive to gossip until its
			// failure is detected (a few seconds): wait for that.
			for deadline := time.Now().Add(30 * time.Second); ; {
				v, err := respCommand(other.ClientAddr, "CLUSTER", "FORGET", nd.Name)
				if err == nil && v.Kind != wire.Error {
					break
				}
				if time.Now().After(deadline) || (err == nil && !strings.Contains(string(v.Str), "is alive")) {
					return fmt.Errorf("%s could not forget %s: %v %s", other.Name, nd.Name, err, v.Str)
				}
				time.Sleep(100 * time.Millisecond)
			}
			done = true
			break
		}
		if !done {
			return errors.New("no running node to tell")
		}
	}
	nd.Removed = true
	if err := st.save(dir); err != nil {
		return err
	}
	fmt.Printf("%s removed from the cluster (its data stays in %s)\n", nd.Name, nd.DataDir)
	return nil
}

func clusterDown(c *cli.Context) error {
	st, err := loadState(c.String("dir"))
	if err != nil {
		return err
	}
	for _, nd := range st.Nodes {
		if alive(nd.PID) {
			syscall.Kill(nd.PID, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range st.Nodes {
		for alive(nd.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(nd.PID) {
			syscall.Kill(nd.PID, syscall.SIGKILL)
		}
	}
	fmt.Printf("cluster in %s is down (data kept; `rumor cluster up` starts a new one)\n", c.String("dir"))
	return nil
}
