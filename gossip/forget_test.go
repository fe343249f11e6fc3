package gossip

import (
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestForgetDropsAMemberKnownOnlyAsLearned: n3 stops, then n1 and n2
// restart, so that they know n3 only from members.json (learned, unknown
// to serf). Forget(n3) answered nil (`rumor cluster remove n3` printed
// "removed") and changed nothing: serf's RemoveFailedNode does nothing for
// a member it does not know, and n3 stayed a failed ring member on every
// node, for good (found in review). Now the forgetting node drops it, and
// tells the others to (n2 here, well before its next periodic ask).
func TestForgetDropsAMemberKnownOnlyAsLearned(t *testing.T) {
	files := withMembersFile(t.TempDir())
	tweak := func(name string) func(*Config) {
		return func(c *Config) {
			files(name)(c)
			c.Timing.PushPull = 10 * time.Second // asks every 40s: only the forget event can tell n2 in time
		}
	}
	nodes := startJoined(t, tweak, "n1", "n2", "n3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n3.Shutdown()
	testutil.Eventually(t, 10*time.Second, "n3 seen failed by n1 and n2", func() bool {
		return statusOf(n1, "n3") == StatusFailed && statusOf(n2, "n3") == StatusFailed
	})
	n1.Shutdown()
	n2.Shutdown()
	n1 = startWith(t, "n1", "127.0.0.1:0", 64, "", nil, tweak("n1"))
	n2 = startWith(t, "n2", "127.0.0.1:0", 64, "", nil, tweak("n2"))
	if _, err := n2.Join([]string{n1.Addr()}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gossip{n1, n2} {
		testutil.Eventually(t, 5*time.Second, "n3 a failed member, learned", func() bool {
			return summary(g.Members()) == "n1=alive n2=alive n3=failed"
		})
	}
	if err := n1.Forget("n3"); err != nil {
		t.Fatalf("Forget(n3): %v", err)
	}
	if s := statusOf(n1, "n3"); s != StatusLeft {
		t.Fatalf("n1 after its Forget(n3): n3 is %v, want left", s)
	}
	testutil.Eventually(t, 5*time.Second, "n2 told that n3 left", func() bool { return statusOf(n2, "n3") == StatusLeft })
	// And it stays gone after a restart (members.json).
	n2.Shutdown()
	n2 = startWith(t, "n2", "127.0.0.1:0", 64, "", nil, tweak("n2"))
	if s := statusOf(n2, "n3"); s != StatusLeft {
		t.Fatalf("n2 restarted: n3 is %v, want left", s)
	}
}
