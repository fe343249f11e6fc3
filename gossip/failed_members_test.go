package gossip

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestNodeJoiningAfterAFailureKnowsTheFailedMember: a failed member stays
// in the others' ring (placement), so a node that joins (or restarts)
// while it is down must know it as failed too; otherwise it computes a
// different placement from the others.
func TestNodeJoiningAfterAFailureKnowsTheFailedMember(t *testing.T) {
	dir := t.TempDir()
	n1 := start(t, "n1", 64, filepath.Join(dir, "n1"), nil)
	n2 := start(t, "n2", 64, filepath.Join(dir, "n2"), nil)
	n3 := start(t, "n3", 64, filepath.Join(dir, "n3"), nil)
	for _, g := range []*Gossip{n2, n3} {
		if _, err := g.Join([]string{n1.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "3 alive", func() bool {
		return summary(n1.Members()) == "n1=alive n2=alive n3=alive" && summary(n2.Members()) == "n1=alive n2=alive n3=alive"
	})
	n3.Shutdown()
	testutil.Eventually(t, 10*time.Second, "n3 failed", func() bool {
		return statusOf(n1, "n3") == StatusFailed && statusOf(n2, "n3") == StatusFailed
	})
	// Past GossipToTheDead (100ms in testTiming), memberlist forgets the dead.
	time.Sleep(time.Second)
	n4 := start(t, "n4", 64, filepath.Join(dir, "n4"), nil)
	if _, err := n4.Join([]string{n1.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "n1 sees n4", func() bool { return statusOf(n1, "n4") == StatusAlive })
	// Let a push-pull or two happen (PushPull is 1s).
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if statusOf(n4, "n3") == StatusFailed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, want := summary(n4.Members()), "n1=alive n2=alive n3=failed n4=alive"; got != want {
		t.Fatalf("n4 (joined while n3 was down) sees %q; n1 sees %q", got, summary(n1.Members()))
	}
}
