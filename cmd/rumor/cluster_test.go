package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestRunningIsTheNodeNotItsPid: a node's recorded pid counts as the node
// only while that process runs on the node's data directory. Pids wrap
// (this machine's do within a day of tests), and a command that trusted
// the pid alone signalled, or waited for, whatever process got it next.
func TestRunningIsTheNodeNotItsPid(t *testing.T) {
	other := exec.Command("sleep", "60") // another program that got the pid
	if err := other.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	// Until the child has exec'd sleep its command line may be empty,
	// which running takes for an exiting node's: wait for sleep's.
	testutil.Eventually(t, 5*time.Second, "the child to run sleep", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", other.Process.Pid))
		return err != nil || strings.HasPrefix(string(b), "sleep\x00")
	})
	if running(&clusterNode{Name: "n1", PID: other.Process.Pid, DataDir: "/data/n1"}) {
		t.Error("a process that is not the node, on the node's recorded pid, counts as the node running")
	}
	// Stands in for `rumor node ... --data-dir /data/n1` (the shell waits
	// for sleep, so its own arguments stay those).
	node := exec.Command("sh", "-c", "sleep 60; true", "sh", "--data-dir", "/data/n1")
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Process.Kill(); node.Wait() })
	testutil.Eventually(t, 5*time.Second, "the child to run sh", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", node.Process.Pid))
		return err != nil || strings.Contains(string(b), "--data-dir")
	})
	if !running(&clusterNode{Name: "n1", PID: node.Process.Pid, DataDir: "/data/n1"}) {
		t.Error("a process on the node's data directory does not count as the node running")
	}
	if running(&clusterNode{Name: "n2", PID: node.Process.Pid, DataDir: "/data/n2"}) {
		t.Error("a node on another data directory counts as this one")
	}
	if running(&clusterNode{Name: "n1", PID: 0, DataDir: "/data/n1"}) {
		t.Error("pid 0 counts as running")
	}
	// A kernel thread that took the pid over has no command line, as an
	// exiting node has: it is not the node (the node could not be started
	// again, and kill and down waited 30 s for it).
	if kernelThread(os.Getpid()) {
		t.Error("this test counts as a kernel thread")
	}
	if b, err := os.ReadFile("/proc/2/comm"); err == nil && strings.TrimSpace(string(b)) == "kthreadd" {
		if !kernelThread(2) {
			t.Error("kthreadd (pid 2) does not count as a kernel thread")
		}
		if running(&clusterNode{Name: "n1", PID: 2, DataDir: "/data/n1"}) {
			t.Error("kthreadd, on a node's recorded pid, counts as the node running")
		}
	}
}

// TestSmallClustersServeWithTheDefaults: `cluster up --nodes 1` or 2
// gives the nodes an N no larger than the cluster and a majority R and W:
// with N=3, R=W=2 on one node every request was refused.
func TestSmallClustersServeWithTheDefaults(t *testing.T) {
	for n, want := range map[int][]string{
		1: {"--replicas=1", "--r=1", "--w=1"},
		2: {"--replicas=2", "--r=2", "--w=2"},
		3: nil,
		5: nil,
	} {
		if got := smallClusterQuorum(n); !slices.Equal(got, want) {
			t.Errorf("%d nodes: %v, want %v", n, got, want)
		}
	}
}

// TestNewNodePathsAreAbsolute: a cluster made with a relative --dir (the
// default ./.rumor-cluster is one) keeps absolute paths for its nodes, so
// that `cluster start` from another working directory restarts a node on
// its own data, not on a new empty directory.
func TestNewNodePathsAreAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	nd := newNode("rel", 7001, 2, "", nil, nil)
	wd, _ := os.Getwd()
	if nd.DataDir != wd+"/rel/n2" || nd.Log != wd+"/rel/n2.log" {
		t.Errorf("data %q, log %q: want them under %s/rel", nd.DataDir, nd.Log, wd)
	}
	if i := slices.Index(nd.Args, "--data-dir"); i < 0 || nd.Args[i+1] != nd.DataDir {
		t.Errorf("the node's arguments %v do not carry the absolute data directory", nd.Args)
	}
}

// TestSetQuorumKeepsTheUsersFlags: the small-cluster quorum flags a node
// restarts with are replaced, in the node's arguments and, in a
// cluster.json written before they were kept apart, in its Extra too; the
// user's --node-arg flags stay, even one equal to a replaced flag.
func TestSetQuorumKeepsTheUsersFlags(t *testing.T) {
	legacy := newNode("/c", 7001, 2, "127.0.0.1:7201", nil, []string{"--procs=2", "--replicas=1", "--r=1", "--w=1", "--replicas=1", "--sync=false"})
	if got, want := legacy.passedOn(), []string{"--procs=2", "--replicas=1", "--sync=false"}; !slices.Equal(got, want) {
		t.Errorf("passed on from a node of an old cluster.json: %v, want %v", got, want)
	}
	legacy.setQuorum(smallClusterQuorum(2))
	want := newNode("/c", 7001, 2, "127.0.0.1:7201", smallClusterQuorum(2), []string{"--procs=2", "--replicas=1", "--sync=false"})
	if !slices.Equal(legacy.Args, want.Args) || !slices.Equal(legacy.Extra, want.Extra) {
		t.Errorf("set to 2 nodes' quorum:\n%v %v\nwant\n%v %v", legacy.Args, legacy.Extra, want.Args, want.Extra)
	}
	legacy.setQuorum(nil)
	want = newNode("/c", 7001, 2, "127.0.0.1:7201", nil, []string{"--procs=2", "--replicas=1", "--sync=false"})
	if !slices.Equal(legacy.Args, want.Args) || legacy.Quorum != nil {
		t.Errorf("set to no quorum flags: %v (quorum %v), want %v", legacy.Args, legacy.Quorum, want.Args)
	}
}
