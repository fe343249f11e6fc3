package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// Tests of `rumor cluster` commands that change the cluster's members:
// up on a new or an existing directory, add, remove. Their clusters take
// ports in 26000-26999 only.

// freeBase26k is freeBase within 26000-26999: a base port whose n nodes'
// ports (P.., P+100.., P+200.. TCP and UDP, P+300..), and those of one
// more node, are all free right now.
func freeBase26k(t *testing.T, n int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 26))
	for range 50 {
		base := 26000 + rng.IntN(700-n)
		if portsFree(base, n+1) {
			return base
		}
	}
	t.Fatal("no free range of ports in 26000-26999")
	return 0
}

func portsFree(base, n int) bool {
	for off := 0; off <= 300; off += 100 {
		for i := range n {
			addr := fmt.Sprintf("127.0.0.1:%d", base+off+i)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			l.Close()
			if off == 200 { // gossip: UDP too
				u, err := net.ListenPacket("udp", addr)
				if err != nil {
					return false
				}
				u.Close()
			}
		}
	}
	return true
}

// cleanupCluster brings the cluster in dir down when the test ends, and
// kills any node left running on a data directory under dir, whatever
// cluster.json says (a node a buggy command did not record).
func cleanupCluster(t *testing.T, dir string) {
	t.Cleanup(func() {
		exec.Command(binary, "cluster", "down", "--dir", dir).Run()
		for _, pid := range nodesUnder(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// nodesUnder lists the pids of the rumor nodes running with a data
// directory under dir.
func nodesUnder(dir string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "--data-dir"); i >= 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], dir+"/") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// readState reads dir's cluster.json.
func readState(t *testing.T, dir string) *clusterState {
	t.Helper()
	var st clusterState
	b, err := os.ReadFile(statePath(dir))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatalf("cluster.json: %v", err)
	}
	return &st
}

// names lists the nodes of st, "n2(removed)" for a removed one.
func (st *clusterState) names() string {
	var s []string
	for _, nd := range st.Nodes {
		if nd.Removed {
			s = append(s, nd.Name+"(removed)")
		} else {
			s = append(s, nd.Name)
		}
	}
	return strings.Join(s, " ")
}

// upCluster runs `rumor cluster up` on dir with a base port of its own.
func upCluster(t *testing.T, dir string, nodes int, args ...string) int {
	t.Helper()
	base := freeBase26k(t, nodes)
	cleanupCluster(t, dir)
	mustCluster(t, dir, append([]string{"up", "--nodes", strconv.Itoa(nodes), "--base-port", strconv.Itoa(base)}, args...)...)
	return base
}

// memberState is how the node at addr lists name: its status, "" if it
// does not list it, "?" if it did not answer.
func memberState(addr, name string) string {
	states, err := gossipStates(addr)
	if err != nil {
		return "?"
	}
	return states[name]
}

// gone: a view lists the member as out of the cluster for good.
func gone(s string) bool { return s == "" || s == "left" || s == "reaped" }

// TestClusterUpOnANewDirHoldsTheLock: `cluster up` on a directory that
// does not exist yet holds the directory's lock while it starts the
// nodes, as on an existing one: it took none, and a `cluster add` run
// meanwhile started a node that up's cluster.json then did not list.
func TestClusterUpOnANewDirHoldsTheLock(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new")
	base := freeBase26k(t, 3)
	cleanupCluster(t, dir)
	up := exec.Command(binary, "cluster", "up", "--dir", dir, "--nodes", "3", "--base-port", strconv.Itoa(base))
	var out bytes.Buffer
	up.Stdout, up.Stderr = &out, &out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	// Once cluster.json is written, up has started n1 and waits for it.
	testutil.Eventually(t, 30*time.Second, "up to write cluster.json", func() bool {
		_, err := os.Stat(statePath(dir))
		return err == nil
	})
	f, err := os.OpenFile(filepath.Join(dir, "cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	lockErr := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	f.Close() // drops the lock if we took it
	select {
	case err := <-done:
		t.Fatalf("up ended before the check (%v):\n%s", err, out.String())
	default:
	}
	if lockErr == nil {
		t.Error("while up starts the nodes of a new directory, the directory's lock is free")
	}
	if err := <-done; err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out.String())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("up made %s with mode %v (%v), want 0700", dir, fi.Mode().Perm(), err)
	}
}

// TestClusterAddThatFailsLeavesNoNode: an `add` whose node cannot start
// leaves the cluster as it was: its gossip port taken over UDP only is
// refused up front, and a node that exits before serving is dropped from
// cluster.json (it stayed there, "unknown" in status, counted by the next
// add). The next add then takes the name.
func TestClusterAddThatFailsLeavesNoNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := upCluster(t, dir, 1)
	gossip2 := fmt.Sprintf("127.0.0.1:%d", base+200+1)
	u, err := net.ListenPacket("udp", gossip2)
	if err != nil {
		t.Fatal(err)
	}
	out, err := clusterCmd(dir, "add")
	u.Close()
	if err == nil || !strings.Contains(out, gossip2) {
		t.Errorf("add with n2's gossip port taken (UDP): %v\n%s\nwant an error naming %s", err, out, gossip2)
	}
	if st := readState(t, dir); st.names() != "n1" {
		t.Errorf("after the add refused for a taken port, cluster.json lists %s", st.names())
	}
	// n2 exits at once: its data directory was made with another
	// partition count.
	if err := os.RemoveAll(filepath.Join(dir, "n2")); err != nil {
		t.Fatal(err)
	}
	old := startNode(t, filepath.Join(dir, "n2"), "--partitions", "64")
	old.cmd.Process.Signal(syscall.SIGTERM)
	if err := old.wait(t, 30*time.Second); err != nil {
		t.Fatalf("the node that made n2's directory: %v\n%s", err, old.stderr)
	}
	out, err = clusterCmd(dir, "add")
	if err == nil || !strings.Contains(out, "n2 exited") {
		t.Errorf("add of a node that exits: %v\n%s", err, out)
	}
	if st := readState(t, dir); st.names() != "n1" {
		t.Errorf("after an add whose node exited, cluster.json lists %s", st.names())
	}
	if err := os.RemoveAll(filepath.Join(dir, "n2")); err != nil {
		t.Fatal(err)
	}
	if out := mustCluster(t, dir, "add"); !strings.Contains(out, "n2 added") {
		t.Errorf("add after the failed ones: %s", out)
	}
	var status clusterStatusJSON
	json.Unmarshal([]byte(mustCluster(t, dir, "status", "--json")), &status)
	if len(status.Nodes) != 2 {
		t.Errorf("status after the adds: %+v, want n1 and n2", status.Nodes)
	}
}

// TestClusterUpRestartsTheSavedCluster: `up` on the directory of a
// cluster that is down (what `down` tells users to run) starts it again
// as it was: the nodes `add` started too, not the removed ones, each with
// its saved arguments and the cluster's key. It rebuilt n1..nN from
// scratch: a removed node came back a member with stale data, an added one
// stayed stopped, and the nodes got a new key and lost their --node-arg.
// An explicit --nodes or --base-port that disagrees with the saved cluster
// is refused with what it holds.
func TestClusterUpRestartsTheSavedCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := upCluster(t, dir, 3, "--node-arg=--request-timeout=3s")
	mustCluster(t, dir, "add")
	mustCluster(t, dir, "stop", "n2")
	mustCluster(t, dir, "remove", "n2")
	before := readState(t, dir)
	mustCluster(t, dir, "down")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "4", "--base-port", strconv.Itoa(base)}, "3 nodes (n1, n3, n4)"},
		{[]string{"--base-port", strconv.Itoa(base + 10)}, fmt.Sprintf("base port %d", base)},
	} {
		out, err := clusterCmd(dir, append([]string{"up"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "remove the directory") {
			t.Errorf("up %v on a saved cluster of n1, n3, n4: %v\n%s\nwant a refusal saying %q and how to start afresh", tc.args, err, out, tc.want)
		}
	}
	if len(nodesUnder(dir)) != 0 {
		t.Fatalf("a refused up left nodes running: %v", nodesUnder(dir))
	}
	out := mustCluster(t, dir, "up", "--nodes", "3", "--base-port", strconv.Itoa(base)) // what it holds: the same
	after := readState(t, dir)
	if after.Key != before.Key || after.names() != "n1 n2(removed) n3 n4" {
		t.Errorf("up on the saved cluster: key kept %v, nodes %s; want n1 n2(removed) n3 n4\n%s", after.Key == before.Key, after.names(), out)
	}
	for i, nd := range after.Nodes {
		if !slices.Equal(nd.Args, before.Nodes[i].Args) {
			t.Errorf("%s restarted with %v, was started with %v", nd.Name, nd.Args, before.Nodes[i].Args)
		}
		if running(nd) == nd.Removed {
			t.Errorf("%s: running %v, removed %v", nd.Name, running(nd), nd.Removed)
		}
	}
	for _, nd := range after.Nodes {
		if nd.Removed {
			continue
		}
		if s := memberState(nd.ClientAddr, "n2"); !gone(s) {
			t.Errorf("%s lists the removed n2 as %q", nd.Name, s)
		}
		if s := memberState(nd.ClientAddr, "n4"); s != "alive" {
			t.Errorf("%s lists the added n4 as %q", nd.Name, s)
		}
		if info, _ := respCommand(nd.ClientAddr, "INFO", "cluster"); !strings.Contains(string(info.Str), "cluster_key:set") {
			t.Errorf("%s runs without the cluster key", nd.Name)
		}
	}
}

// TestClusterAddGrowsASmallClusterToTheDefaults: a cluster that `up`
// started with one node (N=1, R=1, W=1, chosen by up so that it serves)
// and grew with `add` gives the added nodes the quorum of its new size,
// the defaults from three nodes on; it gave them N=1 for good, and a key
// was lost with the node that held it. The nodes that run with a smaller
// N are named, and they take the new one when restarted.
func TestClusterAddGrowsASmallClusterToTheDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upCluster(t, dir, 1, "--node-arg=--request-timeout=3s")
	mustCluster(t, dir, "add")
	out := mustCluster(t, dir, "add")
	st := readState(t, dir)
	infoN := func(nd *clusterNode) string {
		t.Helper()
		v, err := respCommand(nd.ClientAddr, "INFO", "cluster")
		if err != nil {
			t.Fatalf("%s: INFO cluster: %v", nd.Name, err)
		}
		return fmt.Sprintf("N=%s R=%s W=%s", infoField(string(v.Str), "replicas_n"), infoField(string(v.Str), "quorum_r"), infoField(string(v.Str), "quorum_w"))
	}
	if got := infoN(st.Nodes[2]); got != "N=3 R=2 W=2" {
		t.Errorf("n3, added as the third node, runs with %s, want the defaults N=3 R=2 W=2", got)
	}
	if !strings.Contains(out, "n1") || !strings.Contains(out, "restart") {
		t.Errorf("add did not say that n1 runs with a smaller N until restarted:\n%s", out)
	}
	for _, nd := range st.Nodes {
		if !slices.Contains(nd.Args, "--request-timeout=3s") {
			t.Errorf("%s lost the --node-arg: %v", nd.Name, nd.Args)
		}
	}
	mustCluster(t, dir, "stop", "n1")
	mustCluster(t, dir, "start", "n1")
	if got := infoN(st.Nodes[0]); got != "N=3 R=2 W=2" {
		t.Errorf("n1, restarted in a cluster of three, runs with %s, want N=3 R=2 W=2", got)
	}
}

// TestClusterRemoveOfAnIsolatedNode: `remove` of a running node whose
// leave reaches no one (cut off by `isolate`: serf's Leave times out and
// still answers nil) makes sure every other node drops it; they kept it
// as a failed member for 24 hours while remove reported success.
func TestClusterRemoveOfAnIsolatedNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upCluster(t, dir, 3)
	mustCluster(t, dir, "isolate", "n3")
	st := readState(t, dir)
	testutil.Eventually(t, 30*time.Second, "n1 and n2 to see the isolated n3 failed", func() bool {
		return memberState(st.Nodes[0].ClientAddr, "n3") == "failed" && memberState(st.Nodes[1].ClientAddr, "n3") == "failed"
	})
	mustCluster(t, dir, "remove", "n3")
	for _, nd := range st.Nodes[:2] {
		if s := memberState(nd.ClientAddr, "n3"); !gone(s) {
			t.Errorf("once remove n3 succeeded, %s lists n3 as %q", nd.Name, s)
		}
	}
	if st := readState(t, dir); st.names() != "n1 n2 n3(removed)" {
		t.Errorf("cluster.json lists %s", st.names())
	}
}

// TestClusterRemoveOfTheOnlyRunningNode: `remove` of a running node while
// every other node is stopped is refused, the node left running: its
// leave could reach no one, and the others, once started, kept it as a
// failed member while remove had reported success.
func TestClusterRemoveOfTheOnlyRunningNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upCluster(t, dir, 2)
	mustCluster(t, dir, "stop", "n1")
	out, err := clusterCmd(dir, "remove", "n2")
	if err == nil || !strings.Contains(out, "start another node first") {
		t.Errorf("remove of the only running node: %v\n%s", err, out)
	}
	st := readState(t, dir)
	if !running(st.Nodes[1]) || st.Nodes[1].Removed {
		t.Errorf("after the refused remove, n2 runs: %v, removed: %v", running(st.Nodes[1]), st.Nodes[1].Removed)
	}
}

// TestClusterRemoveOfAStoppedNodeTellsEveryNode: `remove` of a stopped
// node tells every running node to forget it, and checks each: it told
// the first only, and a node that did not hear of it (here across a
// partition) kept it as a failed member.
func TestClusterRemoveOfAStoppedNodeTellsEveryNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upCluster(t, dir, 4)
	mustCluster(t, dir, "stop", "n4")
	st := readState(t, dir)
	testutil.Eventually(t, 30*time.Second, "n1, n2 and n3 to see n4 failed", func() bool {
		for _, nd := range st.Nodes[:3] {
			if memberState(nd.ClientAddr, "n4") != "failed" {
				return false
			}
		}
		return true
	})
	mustCluster(t, dir, "partition", "n1", "n2,n3")
	mustCluster(t, dir, "remove", "n4")
	for _, nd := range st.Nodes[:3] {
		if s := memberState(nd.ClientAddr, "n4"); !gone(s) {
			t.Errorf("once remove n4 succeeded, %s lists n4 as %q", nd.Name, s)
		}
	}
}

// TestClusterRemoveOfAStoppedNodeKnownFromMembersFile: `remove` of a
// stopped node tells every running node to forget it, and checks that each
// did. Here the running nodes were restarted while it was down, so they
// know it only from their members file; remove reported success while
// both kept it as a failed member.
func TestClusterRemoveOfAStoppedNodeKnownFromMembersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upCluster(t, dir, 3)
	mustCluster(t, dir, "stop", "n3")
	mustCluster(t, dir, "stop", "n1")
	mustCluster(t, dir, "stop", "n2")
	mustCluster(t, dir, "start", "n1")
	mustCluster(t, dir, "start", "n2")
	st := readState(t, dir)
	testutil.Eventually(t, 30*time.Second, "n1 and n2 to list n3 failed", func() bool {
		return memberState(st.Nodes[0].ClientAddr, "n3") == "failed" && memberState(st.Nodes[1].ClientAddr, "n3") == "failed"
	})
	mustCluster(t, dir, "remove", "n3")
	for _, nd := range st.Nodes[:2] {
		if s := memberState(nd.ClientAddr, "n3"); !gone(s) {
			t.Errorf("once remove n3 succeeded, %s lists n3 as %q", nd.Name, s)
		}
	}
}
