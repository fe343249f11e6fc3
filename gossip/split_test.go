package gossip

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestTheSmallSideOfALongPartitionKeepsTheOthers: c is cut off from a and
// b for longer than ReconnectTimeout. a and b, most of the ring, reap c
// as before; c, alone, used to reap a and b too: its ring shrank to
// itself (every key placed on c, the hints for a and b handed to c), and
// since serf never tries a reaped member again, the cluster stayed split
// after the network healed (a review's finding, with acknowledged writes
// of the small side unreadable after a forced merge). Now c keeps a and b
// as failed members, retried, and the heal joins the cluster again.
func TestTheSmallSideOfALongPartitionKeepsTheOthers(t *testing.T) {
	t.Parallel()
	nodes, filters := filteredTrio(t, testTiming, func(c *Config) { c.ReconnectTimeout = time.Second })
	a, b, c := nodes[0], nodes[1], nodes[2]
	isolateC(nodes, filters)
	testutil.Eventually(t, 20*time.Second, "a and b reap c", func() bool {
		return statusOf(a, "c") == StatusReaped && statusOf(b, "c") == StatusReaped
	})
	testutil.Eventually(t, 20*time.Second, "c's serf drops a and b (reaped there)", func() bool {
		return !slices.ContainsFunc(c.serf.Members(), func(m serf.Member) bool { return m.Name == "a" || m.Name == "b" })
	})
	if got := summary(c.Members()); got != "a=failed b=failed c=alive" {
		t.Fatalf("c, alone, after its serf reaped a and b: %s, want them failed (ring members)", got)
	}
	if c.reapLearned(time.Now().Add(time.Hour)) {
		t.Fatalf("c, alone, reaped the learned a and b: %s", summary(c.Members()))
	}
	for _, f := range filters {
		f.heal()
	}
	testutil.Eventually(t, 20*time.Second, "all alive after the heal", func() bool { return allAlive(nodes) })
}
