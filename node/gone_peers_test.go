package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rumor-kv/rumor/gossip"
)

// TestMembersGoneForGoodLeaveNoPeerState: nodes added and removed under
// new names again and again (`rumor cluster add`, then `remove`) must not
// leave a peer connection, an address and latency series per name on the
// nodes that stay (a review measured 160 /metrics lines per name).
func TestMembersGoneForGoodLeaveNoPeerState(t *testing.T) {
	tr := newPeerTransport(nil, nil)
	defer tr.close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(tr.calls)
	self := gossip.Member{Name: "n1", Tags: gossip.Tags{PeerAddr: "127.0.0.1:1"}}
	var gone []gossip.Member
	for i := 4; i < 14; i++ {
		m := gossip.Member{Name: fmt.Sprintf("n%d", i), Tags: gossip.Tags{PeerAddr: fmt.Sprintf("127.0.0.1:%d", 1+i)}}
		tr.update(append(gone, self, m))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		tr.Call(ctx, m.Name, "ping") // refused: nothing listens, but its client and series now exist
		cancel()
		m.Status = gossip.StatusLeft
		if i%2 == 0 {
			m.Status = gossip.StatusReaped
		}
		gone = append(gone, m)
		tr.update(append(gone, self))
	}
	tr.mu.Lock()
	clients, addrs := len(tr.clients), len(tr.addrs)
	tr.mu.Unlock()
	if clients != 0 || addrs != 1 {
		t.Errorf("after 10 members left for good: %d peer clients and %d addresses kept, want 0 and 1 (n1's)", clients, addrs)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if n := len(mf.GetMetric()); n != 0 {
			t.Errorf("%s: %d series kept for members gone for good, want 0", mf.GetName(), n)
		}
	}

	// A member back under a gone name is called again.
	back := gossip.Member{Name: "n4", Tags: gossip.Tags{PeerAddr: "127.0.0.1:5"}}
	tr.update([]gossip.Member{self, back})
	if _, err := tr.client("n4"); err != nil {
		t.Fatalf("a member back under a gone name: %v", err)
	}

	b := newBreakers(tr, BreakerConfig{}, time.Now)
	b.mu.Lock()
	b.get("n5")
	b.get("n6")
	b.mu.Unlock()
	b.forget([]string{"n5", "n9"})
	if b.lookup("n5") != nil || b.lookup("n6") == nil {
		t.Errorf("after forgetting n5: n5's breaker %v, n6's %v; want only n6's", b.lookup("n5"), b.lookup("n6"))
	}
}
