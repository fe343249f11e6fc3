package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/gossip"
	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/wire"
)

// fastTiming detects failures in well under a second on loopback.
var fastTiming = gossip.Timing{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
	GossipInterval: 20 * time.Millisecond, SuspicionMult: 2, PushPull: time.Second, GossipToTheDead: 100 * time.Millisecond}

func httpDo(t *testing.T, n *Node, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestFaultsOverHTTP(t *testing.T) {
	startWith := func(allow bool) *Node {
		n, err := Start(Config{Name: "t", DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Partitions: 64, AllowFaults: allow})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	info := func(n *Node) string {
		var b strings.Builder
		for _, sec := range n.info() {
			for _, f := range sec.Fields {
				fmt.Fprintf(&b, "%s:%s\n", f[0], f[1])
			}
		}
		return b.String()
	}

	off := startWith(false)
	const state = `{"blocked":["n3","n1"],"delays":{"n2":"50ms","*":"1ms"}}`
	if code, body := httpDo(t, off, "PUT", "/faults", state); code != 403 || body != `{"error":"faults are disabled on this node; start it with --allow-faults"}` {
		t.Fatalf("PUT /faults on a node without AllowFaults: %d %s", code, body)
	}
	if code, body := httpDo(t, off, "GET", "/faults", ""); code != 200 || body != `{"enabled":false,"blocked":[],"delays":{}}` {
		t.Fatalf("GET /faults after a refused PUT: %d %s", code, body)
	}
	if !off.faults.State().Empty() || !strings.Contains(info(off), "faults_enabled:0\nfaults_blocked:\nfaults_delays:\n") {
		t.Fatalf("a refused PUT changed something: %v\n%s", off.faults.State(), info(off))
	}

	on := startWith(true)
	if code, body := httpDo(t, on, "GET", "/faults", ""); code != 200 || body != `{"enabled":true,"blocked":[],"delays":{}}` {
		t.Fatalf("GET /faults: %d %s", code, body)
	}
	want := `{"enabled":true,"blocked":["n1","n3"],"delays":{"*":"1ms","n2":"50ms"}}`
	if code, body := httpDo(t, on, "PUT", "/faults", state); code != 200 || body != want {
		t.Fatalf("PUT /faults: %d %s, want %s", code, body, want)
	}
	if code, body := httpDo(t, on, "PUT", "/faults", state); code != 200 || body != want { // idempotent
		t.Fatalf("PUT /faults again: %d %s", code, body)
	}
	if !on.faults.Blocked("n3") || on.faults.Delay("n2") != 51*time.Millisecond {
		t.Fatalf("state after PUT: %v", on.faults.State())
	}
	if s := info(on); !strings.Contains(s, "faults_enabled:1\nfaults_blocked:n1,n3\nfaults_delays:*=1ms,n2=50ms\n") {
		t.Fatalf("INFO:\n%s", s)
	}
	for body, msg := range map[string]string{
		`{"blocked":["n1"],"delays":{"n2":"-1s"}}`: `negative`,
		`{"blocked":"n1"}`:                         `cannot unmarshal`,
		`{"blocks":["n1"]}`:                        `unknown field \"blocks\"`,
		`{"delays":{"n2":"soon"}}`:                 `\"soon\" is not a duration`,
		`not json`:                                 `want a JSON object`,
		``:                                         `empty`,
	} {
		code, resp := httpDo(t, on, "PUT", "/faults", body)
		if code != 400 || !strings.HasPrefix(resp, `{"error":"node: fault state: `) || !strings.Contains(resp, msg) {
			t.Errorf("PUT /faults %q: %d %s, want 400 with %s", body, code, resp, msg)
		}
	}
	if code, body := httpDo(t, on, "GET", "/faults", ""); code != 200 || body != want {
		t.Fatalf("bad PUTs changed the state: %s", body)
	}
	// Unknown names are fine; {} heals.
	if code, body := httpDo(t, on, "PUT", "/faults", `{"blocked":["not-yet-a-member"]}`); code != 200 || !strings.Contains(body, "not-yet-a-member") {
		t.Fatalf("PUT with an unknown name: %d %s", code, body)
	}
	if code, body := httpDo(t, on, "PUT", "/faults", `{}`); code != 200 || body != `{"enabled":true,"blocked":[],"delays":{}}` {
		t.Fatalf("heal: %d %s", code, body)
	}
}

// startClusterNodes starts n clustered nodes on loopback with fast
// gossip, the rest joining the first, and waits until all see all alive.
func startClusterNodes(t *testing.T, count int, allowFaults bool) []*Node {
	t.Helper()
	return startClusterNodesWith(t, count, func(c *Config) { c.AllowFaults = allowFaults })
}

// startClusterNodesWith is startClusterNodes with each node's
// configuration passed through tweak.
func startClusterNodesWith(t *testing.T, count int, tweak func(*Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i := 1; i <= count; i++ {
		cc := &ClusterConfig{GossipAddr: "127.0.0.1:0", Timing: fastTiming, Timeout: 300 * time.Millisecond}
		if i > 1 {
			cc.Join = []string{nodes[0].cluster.gossip.Addr()}
		}
		cfg := Config{Name: fmt.Sprint("n", i), DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Partitions: 64, Cluster: cc}
		tweak(&cfg)
		n, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	testutil.Eventually(t, 10*time.Second, "all alive", func() bool { return allSeeAlive(nodes) })
	return nodes
}

func allSeeAlive(nodes []*Node) bool {
	for _, n := range nodes {
		for _, m := range n.Cluster().Members {
			if m.Status != "alive" {
				return false
			}
		}
		if len(n.Cluster().Members) != len(nodes) {
			return false
		}
	}
	return true
}

func statusIn(n *Node, name string) string {
	for _, m := range n.Cluster().Members {
		if m.Name == name {
			return m.Status
		}
	}
	return "unknown"
}

func setFaults(t *testing.T, n *Node, state string) {
	t.Helper()
	if _, err := n.setFaults([]byte(state)); err != nil {
		t.Fatal(err)
	}
}

// TestIsolatedNodeOverRealGossipAndPeers isolates n3 of three real nodes
// the way the CLI does (n3 blocks both others, both block n3): gossip on
// both sides sees the other failed, peer calls to n3 hang until their
// deadline, writes reach W=2 among n1 and n2 and not W=3; a heal brings
// all back alive; a delay holds calls back.
func TestIsolatedNodeOverRealGossipAndPeers(t *testing.T) {
	nodes := startClusterNodes(t, 3, true)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	if err := n1.Put(ctx, []byte("before"), []byte("v"), wireOpts()); err != nil {
		t.Fatal(err)
	}

	setFaults(t, n1, `{"blocked":["n3"]}`)
	setFaults(t, n2, `{"blocked":["n3"]}`)
	setFaults(t, n3, `{"blocked":["n1","n2"]}`)
	took := testutil.Eventually(t, 20*time.Second, "both sides see the other failed", func() bool {
		return statusIn(n1, "n3") == "failed" && statusIn(n2, "n3") == "failed" &&
			statusIn(n3, "n1") == "failed" && statusIn(n3, "n2") == "failed"
	})
	t.Logf("isolated n3: both sides saw the other failed after %v (fast timing)", took.Round(10*time.Millisecond))
	if statusIn(n1, "n2") != "alive" {
		t.Fatalf("n1 lost n2: %+v", n1.Cluster().Members)
	}
	// INFO, GET /cluster and /metrics show the fault and n3's state.
	view := n1.Cluster()
	if !view.Faults.Enabled || !slices.Equal(view.Faults.State.Blocked, []string{"n3"}) {
		t.Errorf("GET /cluster faults: %+v", view.Faults)
	}
	for _, p := range view.Requests.Peers {
		if want := p.Name != "n3"; p.Reachable != want || p.GossipDown == want {
			t.Errorf("GET /cluster peer %+v: want reachable=%v", p, want)
		}
	}
	var info strings.Builder
	for _, sec := range n1.info() {
		for _, f := range sec.Fields {
			fmt.Fprintf(&info, "%s:%s\n", f[0], f[1])
		}
	}
	for _, want := range []string{"peer_n3:reachable=0,gossip_failed=1", "peer_n2:reachable=1,gossip_failed=0", "faults_blocked:n3", "hints_pending:"} {
		if !strings.Contains(info.String(), want) {
			t.Errorf("INFO lacks %q:\n%s", want, info.String())
		}
	}
	metrics := map[string]float64{}
	mfs, err := n1.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			metrics[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{"rumor_fault_blocked/n3": 1, "rumor_faults_enabled": 1,
		"rumor_peer_reachable/n3": 0, "rumor_peer_reachable/n2": 1} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("/metrics %s = %v (present %v), want %v", name, got, ok, want)
		}
	}

	// A peer call to a black-holed node is not refused: it hangs until
	// its deadline.
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = n1.cluster.tr.Call(cctx, "n3", "get", []byte("before"))
	cancel()
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took < 200*time.Millisecond {
		t.Fatalf("call to a black-holed node: %v after %v; want the deadline's error after 200ms", err, took)
	}
	if _, err := n1.cluster.tr.Call(ctx, "n2", "get", []byte("before")); err != nil {
		t.Fatalf("call to n2, not blocked: %v", err)
	}
	// Every key has all three nodes as replicas: W=2 is met by n1 and n2.
	if err := n1.Put(ctx, []byte("during"), []byte("v"), wireOpts()); err != nil {
		t.Fatalf("W=2 write on the majority side: %v", err)
	}
	// W=3 cannot be met, and since gossip reports n3 failed the write
	// does not even wait for it.
	if err := n1.Put(withW(ctx, 3), []byte("during3"), []byte("v"), wireOpts()); err == nil || !strings.Contains(err.Error(), "2 of 3") {
		t.Fatalf("W=3 write with n3 cut off: %v; want the quorum error", err)
	}
	// n3 alone cannot reach W=2.
	if err := n3.Put(ctx, []byte("lonely"), []byte("v"), wireOpts()); err == nil {
		t.Fatal("a W=2 write on the isolated node succeeded")
	}

	for _, n := range nodes {
		setFaults(t, n, `{}`)
	}
	took = testutil.Eventually(t, 20*time.Second, "all alive after heal", func() bool { return allSeeAlive(nodes) })
	t.Logf("heal: all alive again after %v (fast timing, reconnect every %v)", took.Round(10*time.Millisecond), gossip.LocalTiming().Reconnect)

	// A delay holds each call back; it adds to the delay for all.
	setFaults(t, n1, `{"delays":{"n2":"150ms","*":"50ms"}}`)
	start = time.Now()
	if _, err := n1.cluster.tr.Call(ctx, "n2", "get", []byte("before")); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("delayed call: %v after %v, want at least 200ms", err, time.Since(start))
	}
	cctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = n1.cluster.tr.Call(cctx, "n2", "get", []byte("before"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call delayed past its deadline: %v", err)
	}
	setFaults(t, n1, `{}`)
	if err := n3.Put(withW(ctx, 3), []byte("after"), []byte("v"), wireOpts()); err != nil {
		t.Fatalf("W=3 write after heal: %v", err)
	}
}

// TestFaultsNeedAllowFaults: on a cluster node without AllowFaults the
// control is refused and neither gossip nor peer calls are filtered.
func TestFaultsNeedAllowFaults(t *testing.T) {
	nodes := startClusterNodes(t, 2, false)
	if _, err := nodes[0].setFaults([]byte(`{"blocked":["n2"]}`)); !errors.Is(err, errFaultsDisabled()) {
		t.Fatalf("setFaults without AllowFaults: %v", err)
	}
	if nodes[0].cluster.tr.faults != nil {
		t.Fatal("the peer transport consults faults on a node without AllowFaults")
	}
	// Even a state set behind the control's back does nothing.
	nodes[0].faults.Set(FaultState{Blocked: []string{"n2"}})
	if _, err := nodes[0].cluster.tr.Call(context.Background(), "n2", "get", []byte("k")); err != nil {
		t.Fatalf("call: %v", err)
	}
}

func wireOpts() wire.WriteOptions { return wire.WriteOptions{} }

func withW(ctx context.Context, w int) context.Context {
	return wire.WithQuorum(ctx, wire.Quorum{W: w})
}

func errFaultsDisabled() error { return wire.ErrFaultsDisabled }

// TestInfoShowsThisNodesShareOfReplicas: INFO cluster's partition_share is
// this node's part of all the replicas the placement has, before and after
// a member leaves for good (a member that left holds none, so the two left
// share every partition's replicas, half each). It used to divide by N
// replicas of every partition even when fewer members than N were left.
func TestInfoShowsThisNodesShareOfReplicas(t *testing.T) {
	nodes := startClusterNodes(t, 3, false)
	field := func(n *Node, name string) string {
		for _, sec := range n.info() {
			for _, f := range sec.Fields {
				if f[0] == name {
					return f[1]
				}
			}
		}
		return ""
	}
	for _, n := range nodes {
		if got := field(n, "partition_share"); got != "0.3333" {
			t.Fatalf("%s: partition_share %s with 3 members and N=3, want 0.3333", n.cfg.Name, got)
		}
	}
	if _, err := nodes[2].clusterCommand([]string{"LEAVE"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "n3 seen left", func() bool {
		return statusIn(nodes[0], "n3") == "left" && statusIn(nodes[1], "n3") == "left"
	})
	for _, n := range nodes[:2] {
		if got, here := field(n, "partition_share"), field(n, "partition_replicas_here"); got != "0.5000" || here != "64" {
			t.Fatalf("%s: partition_share %s, replicas here %s after n3 left; want 0.5000 and all 64 partitions", n.cfg.Name, got, here)
		}
	}
}

// TestPeerCallLatencyIsMeasured: a node's calls to its peers show in
// /metrics as rumor_peer_call_duration_seconds by peer and method: a
// quorum write sends merges to both others, a read asks one of them; and
// the others count the merges they served, as
// rumor_peer_serve_duration_seconds.
func TestPeerCallLatencyIsMeasured(t *testing.T) {
	nodes := startClusterNodes(t, 3, false)
	ctx := context.Background()
	if err := nodes[0].Put(ctx, []byte("k"), []byte("v"), wireOpts()); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Get(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	// The copy to the replica beyond W may still be in flight.
	testutil.Eventually(t, 10*time.Second, "merges to n2 and n3 counted", func() bool {
		got := histogramCounts(t, nodes[0], "rumor_peer_call_duration_seconds")
		return got["merge/n2"] >= 1 && got["merge/n3"] >= 1
	})
	if got := histogramCounts(t, nodes[0], "rumor_peer_call_duration_seconds"); got["get/n2"]+got["get/n3"] < 1 {
		t.Errorf("a quorum read through n1 counted no get: %v", got)
	}
	// The replicas count the merges they served, once their replies are
	// written (which may be after n1 has read them).
	for _, n := range nodes[1:] {
		testutil.Eventually(t, 10*time.Second, n.cfg.Name+"'s served merge counted", func() bool {
			return histogramCounts(t, n, "rumor_peer_serve_duration_seconds")["merge"] >= 1
		})
	}
}

// histogramCounts returns the sample counts of n's histogram name, by the
// series' label values (in label-name order, joined by "/"), for the
// series with samples; a series with samples but no time fails t.
func histogramCounts(t *testing.T, n *Node, name string) map[string]uint64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var values []string
			for _, l := range m.GetLabel() {
				values = append(values, l.GetValue())
			}
			key := strings.Join(values, "/")
			if h := m.GetHistogram(); h.GetSampleCount() > 0 {
				if h.GetSampleSum() <= 0 {
					t.Errorf("%s{%s}: %d calls took %v s in all", name, key, h.GetSampleCount(), h.GetSampleSum())
				}
				got[key] = h.GetSampleCount()
			}
		}
	}
	return got
}

// TestANodeStartsWithItsFaults: Config.Faults is in force before the
// node gossips. n2, restarted blocking n1, does not rejoin n1 through its
// snapshot or its members list (the rejoin names n1, so its filter knows
// whom it dials), and sees n1 alive only once the faults are lifted.
// Without AllowFaults, a starting fault state is refused.
func TestANodeStartsWithItsFaults(t *testing.T) {
	nodes := startClusterNodes(t, 2, true)
	n1, n2 := nodes[0], nodes[1]
	cfg := n2.cfg
	cfg.Cluster = &ClusterConfig{GossipAddr: n2.cluster.gossip.Addr(), Timing: fastTiming, Timeout: 300 * time.Millisecond}
	cfg.ClientAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	n2.Close()
	testutil.Eventually(t, 10*time.Second, "n1 sees n2 failed", func() bool { return statusIn(n1, "n2") == "failed" })
	// n1 blocks n2, as the CLI sets a partition on both sides: it does not
	// dial n2. But a stream n2 dials is one n1 cannot tell apart.
	setFaults(t, n1, `{"blocked":["n2"]}`)
	cfg.Faults = FaultState{Blocked: []string{"n1"}}
	cfg.AllowFaults = false
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "AllowFaults") {
		t.Fatalf("Start with Faults and no AllowFaults: %v, want an error naming AllowFaults", err)
	}
	cfg.AllowFaults = true
	n2, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	// The rejoin through the snapshot takes milliseconds; a second is
	// many of its attempts and of serf's reconnects (fastTiming).
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s := statusIn(n2, "n1"); s == "alive" {
			t.Fatalf("n2, restarted blocking n1, rejoined it: n1 %s", s)
		}
	}
	if got := n2.faults.State().String(); got != "blocks n1" {
		t.Errorf("n2's faults: %q, want blocks n1", got)
	}
	setFaults(t, n1, `{}`)
	setFaults(t, n2, `{}`)
	testutil.Eventually(t, 20*time.Second, "n1 and n2 see each other alive once the faults are lifted", func() bool {
		return allSeeAlive([]*Node{n1, n2})
	})
}
