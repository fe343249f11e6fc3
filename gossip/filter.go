package gossip

import (
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Filter decides what happens to gossip traffic with the member at addr,
// its gossip address (host:port), named name when memberlist knows whom
// it sends to ("" for incoming packets, and for a join to an address
// alone; a rejoin from serf's snapshot names the member). With blackhole, packets to and from it
// vanish and stream dials to it wait out their timeout and fail as a
// timeout would; otherwise delay holds back packets to it, and dials to
// it, that long. It is called for every packet from memberlist's
// goroutines and must not block.
//
// What a filter cannot see: incoming streams (TCP push-pull, the fallback
// probe) come from ephemeral ports and pass. A partition therefore needs
// the filters on both of its sides; with them, neither side dials the
// other and no stream crosses it.
type Filter func(name, addr string) (blackhole bool, delay time.Duration)

// filterTransport puts a Filter between memberlist and its transport.
type filterTransport struct {
	inner   memberlist.NodeAwareTransport
	filter  Filter
	packets chan *memberlist.Packet
	done    chan struct{}  // closed when Shutdown begins
	stop    chan struct{}  // closed when the inner transport is shut down
	wg      sync.WaitGroup // the packet loop

	mu struct {
		sync.Mutex
		timers map[*time.Timer]struct{} // delayed packets not yet sent
		closed bool
	}
	shutdownOnce sync.Once
	shutdownErr  error
}

var _ memberlist.NodeAwareTransport = (*filterTransport)(nil)

// newFilterTransport wraps inner and starts the goroutine that filters its
// incoming packets; Shutdown stops it and then inner.
func newFilterTransport(inner memberlist.NodeAwareTransport, f Filter) *filterTransport {
	t := &filterTransport{inner: inner, filter: f, packets: make(chan *memberlist.Packet),
		done: make(chan struct{}), stop: make(chan struct{})}
	t.mu.timers = map[*time.Timer]struct{}{}
	t.wg.Add(1)
	go t.loop()
	return t
}

// loop forwards the inner transport's packets, minus those from
// black-holed addresses. It reads until the inner transport is shut down
// (from Shutdown's start on, dropping what it reads): NetTransport's
// listeners block on an unread packet channel, and its Shutdown waits for
// them.
func (t *filterTransport) loop() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case <-t.stop:
			return
		case p := <-in:
			if p.From != nil {
				if blackhole, _ := t.filter("", p.From.String()); blackhole {
					continue
				}
			}
			select {
			case t.packets <- p:
			case <-t.done:
			}
		}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *filterTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport.
func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport: a black-holed
// packet is dropped as if sent; a delayed one is sent later by a timer, so
// the caller does not wait.
func (t *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	blackhole, delay := t.filter(a.Name, a.Addr)
	switch {
	case blackhole:
		return time.Now(), nil
	case delay > 0:
		t.sendLater(append([]byte(nil), b...), a, delay)
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, a)
}

func (t *filterTransport) sendLater(b []byte, a memberlist.Address, delay time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(delay, func() {
		t.mu.Lock()
		_, pending := t.mu.timers[timer]
		delete(t.mu.timers, timer)
		t.mu.Unlock()
		if pending {
			t.inner.WriteToAddress(b, a) // a lost packet is a packet's fate
		}
	})
	t.mu.timers[timer] = struct{}{}
}

// PacketCh implements memberlist.Transport: the inner transport's packets
// minus those from black-holed addresses.
func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a dial to a
// black-holed address fails with a timeout error once timeout has passed;
// a delayed one waits its delay first, out of the same timeout.
func (t *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	blackhole, delay := t.filter(a.Name, a.Addr)
	if blackhole || (delay > 0 && delay >= timeout) {
		t.wait(timeout)
		return nil, dialTimeout(a.Addr)
	}
	if delay > 0 {
		if !t.wait(delay) {
			return nil, dialTimeout(a.Addr)
		}
		timeout -= delay
	}
	return t.inner.DialAddressTimeout(a, timeout)
}

// wait waits d, or less if the transport shuts down (then false).
func (t *filterTransport) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.done:
		return false
	}
}

// dialTimeout is the error of a dial that timed out, as net.Dialer makes
// it: a net.Error whose Timeout is true.
func dialTimeout(addr string) error {
	err := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	if tcp, rerr := net.ResolveTCPAddr("tcp", addr); rerr == nil {
		err.Addr = tcp
	}
	return err
}

// StreamCh implements memberlist.Transport. Incoming streams pass: see
// Filter.
func (t *filterTransport) StreamCh() <-chan net.Conn { return t.inner.StreamCh() }

// Shutdown stops the packet loop, drops the delayed packets not yet sent,
// and shuts the inner transport down. Safe to call more than once.
func (t *filterTransport) Shutdown() error {
	t.shutdownOnce.Do(func() {
		t.mu.Lock()
		t.mu.closed = true
		for timer := range t.mu.timers {
			timer.Stop()
		}
		clear(t.mu.timers)
		t.mu.Unlock()
		close(t.done)
		t.shutdownErr = t.inner.Shutdown()
		close(t.stop)
		t.wg.Wait()
	})
	return t.shutdownErr
}

// newNetTransport makes the transport memberlist would make for cfg,
// binding a free port when cfg.BindPort is 0 (and setting cfg's ports to
// it, as memberlist does), so that a Filter can wrap it.
func newNetTransport(cfg *memberlist.Config, logger *log.Logger) (*memberlist.NetTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{cfg.BindAddr}, BindPort: cfg.BindPort, Logger: logger}
	tries := 1
	if cfg.BindPort == 0 {
		// TCP and UDP must get the same free port: retry when the port
		// the OS gave for one is taken for the other (as memberlist does).
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			if cfg.BindPort == 0 {
				cfg.BindPort = nt.GetAutoBindPort()
				cfg.AdvertisePort = cfg.BindPort
			}
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("gossip: network transport on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
}
