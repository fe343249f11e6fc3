package gossip

import (
	"fmt"
	"slices"
	"strings"
	"sync"
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

// sideKeeps waits until the serf of every node in side has dropped every
// member of others (past ReconnectTimeout), and the reap events are
// handled (each of others listed failed or reaped), then reports any of
// others not listed failed: reaped by a node that does not see most of
// the ring alive.
func sideKeeps(t *testing.T, side []*Gossip, others []string) []string {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "serf drops the other side (ReconnectTimeout)", func() bool {
		for _, g := range side {
			if slices.ContainsFunc(g.serf.Members(), func(m serf.Member) bool { return slices.Contains(others, m.Name) }) {
				return false
			}
		}
		return true
	})
	testutil.Eventually(t, 10*time.Second, "the reap events handled", func() bool {
		for _, g := range side {
			for _, name := range others {
				if s := statusOf(g, name); s != StatusFailed && s != StatusReaped {
					return false
				}
			}
		}
		return true
	})
	var bad []string
	for _, g := range side {
		for _, name := range others {
			if s := statusOf(g, name); s != StatusFailed {
				bad = append(bad, fmt.Sprintf("%s lists %s %s", g.cfg.Name, name, s))
			}
		}
	}
	return bad
}

// TestNeitherHalfOfASplitReaps: a 2|2 split outlives ReconnectTimeout.
// Neither half sees most of the ring alive, so neither may reap. Serf
// reaps every expired member in one pass and only then sends their reap
// events, one each: the members of the other half, which failed within
// a reap interval of each other (15 s in production, 1 s here), were
// gone from serf when the first event was handled, the majority was
// counted as 2 alive of 3, and both halves reaped each other for good
// (a review's finding).
func TestNeitherHalfOfASplitReaps(t *testing.T) {
	t.Parallel()
	nodes, filters := filteredNodes(t, testTiming, []string{"a", "b", "c", "d"}, func(c *Config) { c.ReconnectTimeout = 10 * time.Second })
	split(nodes, filters, []int{0, 1}, []int{2, 3})
	bad := append(sideKeeps(t, nodes[:2], []string{"c", "d"}), sideKeeps(t, nodes[2:], []string{"a", "b"})...)
	if len(bad) > 0 {
		t.Errorf("a 2|2 split past ReconnectTimeout reaped: %s; want every member of the other half kept failed", strings.Join(bad, "; "))
	}
	for _, f := range filters {
		f.heal()
	}
	testutil.Eventually(t, 30*time.Second, "all alive after the heal", func() bool { return allAlive(nodes) })
}

// TestTheSmallSideOfASplitKeepsTheOthersWhenTheyFailTogether: a 3|2
// split at production proportions (the big side's members fail on the
// small side within one reap interval, and are reaped in one pass): the
// small side keeps n1-n3, the big side reaps n4 and n5.
//
// Until each reap event is handled, the members serf dropped are listed
// as failed: OnChange listed them as missing in between (placement
// without them, for a moment).
func TestTheSmallSideOfASplitKeepsTheOthersWhenTheyFailTogether(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	most, short := map[string]int{}, map[string]string{} // the most members each listed, and a shorter list after
	watch := func(c *Config) {
		name := c.Name
		c.OnChange = func(ms []Member) {
			mu.Lock()
			defer mu.Unlock()
			if len(ms) < most[name] && short[name] == "" {
				short[name] = summary(ms)
			}
			most[name] = max(most[name], len(ms))
		}
	}
	nodes, filters := filteredNodes(t, testTiming, []string{"n1", "n2", "n3", "n4", "n5"}, func(c *Config) { c.ReconnectTimeout = 10 * time.Second }, watch)
	split(nodes, filters, []int{0, 1, 2}, []int{3, 4})
	if bad := sideKeeps(t, nodes[3:], []string{"n1", "n2", "n3"}); len(bad) > 0 {
		t.Errorf("the small side of a 3|2 split past ReconnectTimeout reaped: %s; want n1-n3 kept failed", strings.Join(bad, "; "))
	}
	mu.Lock()
	for _, name := range []string{"n4", "n5"} {
		if short[name] != "" {
			t.Errorf("%s's OnChange listed %d members, then only %s", name, most[name], short[name])
		}
	}
	mu.Unlock()
	testutil.Eventually(t, 30*time.Second, "the big side reaps n4 and n5", func() bool {
		for _, g := range nodes[:3] {
			if statusOf(g, "n4") != StatusReaped || statusOf(g, "n5") != StatusReaped {
				return false
			}
		}
		return true
	})
}
