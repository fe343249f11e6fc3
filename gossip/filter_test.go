package gossip

import (
	"errors"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// addrFilter black-holes and delays by address; safe for concurrent use.
type addrFilter struct {
	mu      sync.Mutex
	blocked map[string]bool
	delays  map[string]time.Duration
}

func newAddrFilter() *addrFilter {
	return &addrFilter{blocked: map[string]bool{}, delays: map[string]time.Duration{}}
}

func (f *addrFilter) filter(_, addr string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[addr], f.delays[addr]
}

func (f *addrFilter) block(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		f.blocked[a] = true
	}
}

func (f *addrFilter) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.blocked)
	clear(f.delays)
}

func (f *addrFilter) delay(addr string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delays[addr] = d
}

// mockPeers returns three transports on one MockNetwork; a is wrapped in
// a filterTransport with filter f.
func mockPeers(t *testing.T, f *addrFilter) (a *filterTransport, b, c *memberlist.MockTransport) {
	t.Helper()
	var mn memberlist.MockNetwork
	inner := mn.NewTransport("a")
	b, c = mn.NewTransport("b"), mn.NewTransport("c")
	a = newFilterTransport(inner, f.filter)
	t.Cleanup(func() { a.Shutdown() })
	return a, b, c
}

func addrOf(tr *memberlist.MockTransport) memberlist.Address {
	ip, port, _ := tr.FinalAdvertiseAddr("", 0)
	return memberlist.Address{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port))}
}

// recv returns the next packet on ch, failing after 5s.
func recv(t *testing.T, ch <-chan *memberlist.Packet) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5s")
		return nil
	}
}

// send writes b from tr to addr in a goroutine: the mock network hands a
// packet over only when the receiver reads it.
func send(t *testing.T, write func([]byte, memberlist.Address) (time.Time, error), b string, addr memberlist.Address) {
	go func() {
		if _, err := write([]byte(b), addr); err != nil {
			t.Errorf("write %q: %v", b, err)
		}
	}()
}

func TestFilterDropsPacketsToBlocked(t *testing.T) {
	f := newAddrFilter()
	a, b, _ := mockPeers(t, f)
	f.block(addrOf(b).Addr)
	// The mock delivers synchronously: had the first packet been sent,
	// WriteToAddress would block until b read it, before the second.
	if _, err := a.WriteToAddress([]byte("dropped"), addrOf(b)); err != nil {
		t.Fatalf("a black-holed packet is sent as far as the sender knows: %v", err)
	}
	if _, err := a.WriteTo([]byte("dropped too"), addrOf(b).Addr); err != nil {
		t.Fatal(err)
	}
	f.heal()
	send(t, a.WriteToAddress, "after heal", addrOf(b))
	if p := recv(t, b.PacketCh()); string(p.Buf) != "after heal" {
		t.Fatalf("b got %q first, want the packet sent after the heal", p.Buf)
	}
}

func TestFilterDropsPacketsFromBlocked(t *testing.T) {
	f := newAddrFilter()
	a, b, c := mockPeers(t, f)
	f.block(addrOf(b).Addr)
	// The mock hands a packet over when the filter's loop reads it, so b's
	// write returns once the loop has taken b's packet; the loop judges it
	// before it reads c's.
	aAddr := addrOf(a.inner.(*memberlist.MockTransport))
	if _, err := b.WriteToAddress([]byte("from b"), aAddr); err != nil {
		t.Fatal(err)
	}
	send(t, c.WriteToAddress, "from c", aAddr)
	p := recv(t, a.PacketCh())
	if string(p.Buf) != "from c" {
		t.Fatalf("a got %q from %v, want only c's packet", p.Buf, p.From)
	}
	select {
	case p := <-a.PacketCh():
		t.Fatalf("a got %q from the black-holed b", p.Buf)
	default:
	}
}

func TestFilterDelaysPackets(t *testing.T) {
	f := newAddrFilter()
	a, b, _ := mockPeers(t, f)
	const delay = 150 * time.Millisecond
	f.delay(addrOf(b).Addr, delay)
	start := time.Now()
	buf := []byte("late")
	if _, err := a.WriteToAddress(buf, addrOf(b)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Fatalf("a delayed write blocked its caller for %v", took)
	}
	copy(buf, "XXXX") // the caller may reuse its buffer at once
	p := recv(t, b.PacketCh())
	if took := time.Since(start); string(p.Buf) != "late" || took < delay {
		t.Fatalf("got %q after %v, want %q after at least %v", p.Buf, took, "late", delay)
	}
	t.Logf("a packet delayed by %v arrived after %v", delay, time.Since(start).Round(time.Millisecond))
}

func TestFilterDialToBlockedTimesOut(t *testing.T) {
	f := newAddrFilter()
	a, b, _ := mockPeers(t, f)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // accept a's streams
		for {
			select {
			case conn := <-b.StreamCh():
				conn.Close()
			case <-stop:
				return
			}
		}
	}()
	const timeout = 200 * time.Millisecond
	if conn, err := a.DialAddressTimeout(addrOf(b), timeout); err != nil {
		t.Fatalf("dial without faults: %v", err)
	} else {
		conn.Close()
	}
	f.block(addrOf(b).Addr)
	for _, dial := range []func() (net.Conn, error){
		func() (net.Conn, error) { return a.DialAddressTimeout(addrOf(b), timeout) },
		func() (net.Conn, error) { return a.DialTimeout(addrOf(b).Addr, timeout) },
	} {
		start := time.Now()
		conn, err := dial()
		took := time.Since(start)
		var ne net.Error
		if conn != nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("dial to a black-holed address: %v, %v; want a timeout error", conn, err)
		}
		if took < timeout {
			t.Fatalf("dial to a black-holed address failed after %v, before its timeout %v", took, timeout)
		}
	}
	// A delay comes out of the dial's timeout.
	f.heal()
	f.delay(addrOf(b).Addr, 100*time.Millisecond)
	start := time.Now()
	if conn, err := a.DialAddressTimeout(addrOf(b), time.Second); err != nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delayed dial: %v after %v", err, time.Since(start))
	} else {
		conn.Close()
	}
	f.delay(addrOf(b).Addr, time.Second)
	if _, err := a.DialAddressTimeout(addrOf(b), 100*time.Millisecond); err == nil {
		t.Fatal("a dial delayed past its timeout succeeded")
	}
	// Shutdown ends a dial waiting on a black hole.
	f.block(addrOf(b).Addr)
	errc := make(chan error, 1)
	go func() {
		_, err := a.DialAddressTimeout(addrOf(b), time.Hour)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the dial start waiting; either order passes
	a.Shutdown()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("dial succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not end a dial waiting on a black hole")
	}
}

func TestFilterShutdownDropsDelayedPackets(t *testing.T) {
	f := newAddrFilter()
	a, b, _ := mockPeers(t, f)
	f.delay(addrOf(b).Addr, 50*time.Millisecond)
	a.WriteToAddress([]byte("never"), addrOf(b))
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(); err != nil { // twice is fine
		t.Fatal(err)
	}
	select {
	case p := <-b.PacketCh():
		t.Fatalf("a packet delayed past Shutdown arrived: %q", p.Buf)
	case <-time.After(200 * time.Millisecond): // four times the delay
	}
}

// filteredTrio starts three members a, b, c on loopback, each with its
// own address filter, and waits until all see all alive.
func filteredTrio(t *testing.T, timing Timing, tweaks ...func(*Config)) ([]*Gossip, []*addrFilter) {
	t.Helper()
	return filteredNodes(t, timing, []string{"a", "b", "c"}, tweaks...)
}

// filteredNodes starts the named members on loopback, each with its own
// address filter, joins them through the first, and waits until all see
// all alive.
func filteredNodes(t *testing.T, timing Timing, names []string, tweaks ...func(*Config)) ([]*Gossip, []*addrFilter) {
	t.Helper()
	var nodes []*Gossip
	var filters []*addrFilter
	for _, name := range names {
		f := newAddrFilter()
		cfg := Config{Name: name, BindAddr: "127.0.0.1:0", Tags: Tags{Partitions: 64}, Timing: timing, Filter: f.filter}
		for _, tw := range tweaks {
			tw(&cfg)
		}
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Shutdown() })
		nodes, filters = append(nodes, g), append(filters, f)
	}
	for _, g := range nodes[1:] {
		if _, err := g.Join([]string{nodes[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "all alive", func() bool { return allAlive(nodes) })
	return nodes, filters
}

// allAlive reports whether every node sees every one of nodes alive, and
// no other member.
func allAlive(nodes []*Gossip) bool {
	var want []string
	for _, g := range nodes {
		want = append(want, g.cfg.Name+"=alive")
	}
	slices.Sort(want)
	all := strings.Join(want, " ")
	for _, g := range nodes {
		if summary(g.Members()) != all {
			return false
		}
	}
	return true
}

// split black-holes every member of side x from every member of side y,
// both ways.
func split(nodes []*Gossip, filters []*addrFilter, x, y []int) {
	for _, i := range x {
		for _, j := range y {
			filters[i].block(nodes[j].Addr())
			filters[j].block(nodes[i].Addr())
		}
	}
}

// isolateC black-holes c on both sides, as the CLI sets it.
func isolateC(nodes []*Gossip, filters []*addrFilter) {
	a, b, c := nodes[0], nodes[1], nodes[2]
	filters[0].block(c.Addr())
	filters[1].block(c.Addr())
	filters[2].block(a.Addr(), b.Addr())
}

// TestIsolateAndHeal isolates one of three members through their filters,
// sees both sides declare the other failed while the majority keeps each
// other, heals, and sees everyone alive again: the heal needs serf's
// reconnect, since memberlist never probes a member it declared dead.
func TestIsolateAndHeal(t *testing.T) {
	t.Parallel()
	nodes, filters := filteredTrio(t, testTiming)
	a, b, c := nodes[0], nodes[1], nodes[2]
	isolateC(nodes, filters)
	took := testutil.Eventually(t, 20*time.Second, "both sides see the other failed", func() bool {
		return statusOf(a, "c") == StatusFailed && statusOf(b, "c") == StatusFailed &&
			statusOf(c, "a") == StatusFailed && statusOf(c, "b") == StatusFailed
	})
	t.Logf("test timing: isolated -> both sides see the other failed after %v", took.Round(10*time.Millisecond))
	if statusOf(a, "b") != StatusAlive || statusOf(b, "a") != StatusAlive {
		t.Fatalf("the majority side lost each other: a sees %s, b sees %s", summary(a.Members()), summary(b.Members()))
	}
	for _, f := range filters {
		f.heal()
	}
	took = testutil.Eventually(t, 20*time.Second, "all alive after heal", func() bool { return allAlive(nodes) })
	t.Logf("test timing, reconnect every %v: heal -> every member sees all alive after %v", LocalTiming().Reconnect, took.Round(10*time.Millisecond))
}

// TestIsolateAndHealWithLocalTiming measures the production profile: how
// long the majority takes to see an isolated member failed, and how long
// after a heal all are alive again. (The isolated member itself takes
// about 20s more to declare the others failed: with no one to confirm its
// suspicion, Lifeguard waits SuspicionMaxTimeoutMult times longer; that
// side is checked with the fast timing above.)
func TestIsolateAndHealWithLocalTiming(t *testing.T) {
	t.Parallel()
	nodes, filters := filteredTrio(t, LocalTiming())
	a, b := nodes[0], nodes[1]
	isolateC(nodes, filters)
	took := testutil.Eventually(t, 20*time.Second, "the majority sees c failed", func() bool {
		return statusOf(a, "c") == StatusFailed && statusOf(b, "c") == StatusFailed
	})
	t.Logf("LocalTiming: isolated -> the majority sees it failed after %v", took.Round(10*time.Millisecond))
	for _, f := range filters {
		f.heal()
	}
	took = testutil.Eventually(t, 20*time.Second, "all alive after heal", func() bool { return allAlive(nodes) })
	t.Logf("LocalTiming: heal -> every member sees all alive after %v", took.Round(10*time.Millisecond))
}

// TestFilterShutdownWhilePacketsArrive shuts a filter over a real
// NetTransport down while packets pour in and nobody reads them: the
// NetTransport's listener blocks on its packet channel until someone reads
// it, and its Shutdown waits for the listener, so the filter must go on
// reading until the inner transport is down.
func TestFilterShutdownWhilePacketsArrive(t *testing.T) {
	nt, err := newNetTransport(&memberlist.Config{BindAddr: "127.0.0.1"}, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int64 // packets the filter has judged
	ft := newFilterTransport(nt, func(string, string) (bool, time.Duration) { seen.Add(1); return false, 0 })
	conn, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for {
			select {
			case <-stop:
				return
			default:
				conn.Write([]byte("ping"))
			}
		}
	}()
	// Once the filter has judged a packet with nobody reading, it holds
	// that packet, and the NetTransport's listener the next one.
	testutil.Eventually(t, 5*time.Second, "a packet reaches the filter", func() bool { return seen.Load() >= 1 })
	done := make(chan error, 1)
	go func() { done <- ft.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hangs while packets arrive")
	}
	close(stop)
	<-flooded
}
