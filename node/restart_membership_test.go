package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/ring"
)

// TestRestartedNodeComputesTheSamePlacementWhileAMemberIsDown: a failed
// member stays in the ring of the nodes that saw it fail. A node that
// restarts (rejoining through its gossip snapshot) while that member is
// still down must place keys as the others do; otherwise it sends writes
// to other replicas than the others read from, and a read of R misses a
// write acknowledged by W with R+W>N.
func TestRestartedNodeComputesTheSamePlacementWhileAMemberIsDown(t *testing.T) {
	nodes := startClusterNodes(t, 6, false)
	ctx := context.Background()
	n5 := nodes[4]
	n5.Close() // stopped, not left: the others keep it, failed
	testutil.Eventually(t, 20*time.Second, "n5 seen failed", func() bool {
		for _, n := range slices.Delete(slices.Clone(nodes), 4, 5) {
			if statusIn(n, "n5") != "failed" {
				return false
			}
		}
		return true
	})
	// Memberlist keeps a dead member for GossipToTheDead (100ms in
	// fastTiming) and then only serf knows it: wait that out (a timer,
	// nothing to poll), as a restart a while after a failure does.
	time.Sleep(time.Second)

	// Restart n1 with its data directory and gossip address: it rejoins
	// the others through its snapshot.
	n1 := restartNode(t, nodes[0])
	nodes[0] = n1
	testutil.Eventually(t, 20*time.Second, "restarted n1 sees the others alive", func() bool {
		for _, name := range []string{"n2", "n3", "n4", "n6"} {
			if statusIn(n1, name) != "alive" || statusIn(nodes[1], "n1") != "alive" {
				return false
			}
		}
		return true
	})
	want := nodes[1].cluster.coord.place.Load().Members()
	// A few push-pulls (every second) to learn what the others know.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !slices.Equal(n1.cluster.coord.place.Load().Members(), want) {
		time.Sleep(50 * time.Millisecond)
	}
	got := n1.cluster.coord.place.Load().Members()
	if slices.Equal(got, want) {
		return
	}
	// The consequence: a write acknowledged through n1 (W=2) that a read
	// of R=2 through another node does not see (R+W>N).
	p1 := n1.cluster.coord.place.Load()
	for i := 0; i < 2000; i++ {
		k := fmt.Sprint("k", i)
		part := ring.Partition([]byte(k), 64)
		r1 := p1.Replicas(part)
		for _, reader := range nodes[1:] {
			if reader == n5 || slices.Contains(r1, reader.cfg.Name) {
				continue
			}
			r2 := reader.cluster.coord.place.Load().Replicas(part)
			if !slices.Contains(r2, "n5") || !slices.Contains(r2, reader.cfg.Name) {
				continue
			}
			if err := n1.Put(ctx, []byte(k), []byte("v"), wireOpts()); err != nil {
				t.Fatalf("write of %s via restarted n1: %v", k, err)
			}
			o, err := reader.Get(ctx, []byte(k))
			if err == nil && !o.Reg.Live() {
				t.Errorf("%s written through n1 (replicas there %v, W=2 acknowledged) is not found by an R=2 read through %s (replicas there %v)",
					k, r1, reader.cfg.Name, r2)
				i = 2000
				break
			}
		}
	}
	t.Fatalf("restarted n1 places keys on %v, the others on %v", got, want)
}

// TestHintsOfARestartedStandInForAReapedMemberAreDelivered: a stand-in
// restarts while the member it holds hints for is down; that member is
// then reaped (failed past ReconnectTimeout). Its hints must go to the
// keys' replicas, as the other nodes' hints for it do, not stay forever.
func TestHintsOfARestartedStandInForAReapedMemberAreDelivered(t *testing.T) {
	var nodes []*Node
	for i := 1; i <= 4; i++ {
		cc := &ClusterConfig{GossipAddr: "127.0.0.1:0", Timing: fastTiming, Timeout: 300 * time.Millisecond,
			ReconnectTimeout: 3 * time.Second}
		if i > 1 {
			cc.Join = []string{nodes[0].cluster.gossip.Addr()}
		}
		n, err := Start(Config{Name: fmt.Sprint("n", i), DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Partitions: 64, Cluster: cc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	testutil.Eventually(t, 10*time.Second, "all alive", func() bool { return allSeeAlive(nodes) })
	ctx := context.Background()
	nodes[3].Close()
	testutil.Eventually(t, 20*time.Second, "n4 seen failed", func() bool {
		return statusIn(nodes[0], "n4") == "failed" && statusIn(nodes[1], "n4") == "failed" && statusIn(nodes[2], "n4") == "failed"
	})
	for i := 0; i < 30; i++ {
		if err := nodes[i%3].Put(withW(ctx, 3), []byte(fmt.Sprint("k", i)), []byte("v"), wireOpts()); err != nil {
			t.Fatalf("W=3 with n4 down: %v", err)
		}
	}
	si := -1
	for i := 0; i < 3; i++ {
		if nodes[i].cluster.coord.Stats().HintsPending["n4"] > 0 {
			si = i
			break
		}
	}
	if si < 0 {
		t.Fatal("no hints for n4")
	}
	time.Sleep(time.Second) // past GossipToTheDead (a timer, nothing to poll)
	s := restartNode(t, nodes[si])
	nodes[si] = s
	held := s.cluster.coord.Stats().HintsPending["n4"]
	t.Logf("restarted stand-in %s holds %d hints for n4", s.Name(), held)
	testutil.Eventually(t, 20*time.Second, "the others reap n4", func() bool {
		for i := 0; i < 3; i++ {
			if i != si && statusIn(nodes[i], "n4") != "reaped" {
				return false
			}
		}
		return true
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && s.cluster.coord.Stats().HintsPending["n4"] > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if h := s.cluster.coord.Stats().HintsPending["n4"]; h > 0 {
		t.Fatalf("restarted stand-in %s still holds %d hints for n4 (its status there: %s) 10s after the others reaped it",
			s.Name(), h, statusIn(s, "n4"))
	}
}

// restartNode stops old and starts it again on its data directory and
// gossip address, without --join: it rejoins through its gossip snapshot.
func restartNode(t *testing.T, old *Node) *Node {
	t.Helper()
	cfg := old.cfg
	gaddr := old.cluster.gossip.Addr()
	old.Close()
	cc := *cfg.Cluster
	cc.GossipAddr, cc.Join = gaddr, nil
	cfg.Cluster = &cc
	cfg.ClientAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestAFailedMemberOutlivesARestartOfAllOthers: n3 stops; then n1 and n2
// restart. Serf's snapshot keeps only members to rejoin, so both forgot
// n3 and placed its partitions on themselves (a helper's real cluster:
// n3 "unknown", 16,384 replicas each on n1 and n2). Each node keeps the
// failed members it knew in its data directory (members.json).
func TestAFailedMemberOutlivesARestartOfAllOthers(t *testing.T) {
	nodes := startClusterNodes(t, 3, false)
	nodes[2].Close()
	testutil.Eventually(t, 20*time.Second, "n3 seen failed", func() bool {
		return statusIn(nodes[0], "n3") == "failed" && statusIn(nodes[1], "n3") == "failed"
	})
	n1 := restartNode(t, nodes[0])
	n2 := restartNode(t, nodes[1])
	for _, n := range []*Node{n1, n2} {
		testutil.Eventually(t, 20*time.Second, "n3 still a failed member after the others restarted", func() bool {
			return statusIn(n, "n3") == "failed" && statusIn(n, "n1") == "alive" && statusIn(n, "n2") == "alive"
		})
	}
}
