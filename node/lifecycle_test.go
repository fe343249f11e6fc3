package node

import (
	"net"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// TestCloseWithAStalledHTTPClientIsClean: a client that stalled in the
// middle of a request body must not turn a clean shutdown into an error
// (the process then exited 1, and a supervisor took it for a crash): its
// connection is closed after the grace period and Close reports nothing.
func TestCloseWithAStalledHTTPClientIsClean(t *testing.T) {
	n, err := Start(Config{Name: "t", DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Partitions: 64})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PUT /kv/foo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")); err != nil {
		t.Fatal(err)
	}
	// Until the handler is reading the body (its goroutine is in it).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		if strings.Contains(b.String(), "wire.(*httpAPI).put") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the PUT never reached its handler")
		}
	}
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatalf("Close with a stalled HTTP client after %v: %v", time.Since(start), err)
	}
}

// TestPeerAddressWithAWildcardClientAddress: a node whose client address
// listens on every interface advertises its peer address on its gossip
// address's host (listening on "0.0.0.0:0" gave ":::0", which failed to
// parse), and if that too is a wildcard it asks for --peer-addr.
func TestPeerAddressWithAWildcardClientAddress(t *testing.T) {
	n, err := Start(Config{Name: "w", DataDir: t.TempDir(), ClientAddr: "0.0.0.0:0", HTTPAddr: "-", Partitions: 64,
		Cluster: &ClusterConfig{GossipAddr: "127.0.0.1:0", Timing: fastTiming}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, m := range n.cluster.gossip.Members() {
		if host, _, _ := net.SplitHostPort(m.Tags.PeerAddr); m.Name == "w" && host != "127.0.0.1" {
			t.Errorf("peer address %q, want it on the gossip address's host 127.0.0.1", m.Tags.PeerAddr)
		}
	}
	_, err = Start(Config{Name: "v", DataDir: t.TempDir(), ClientAddr: "0.0.0.0:0", HTTPAddr: "-", Partitions: 64,
		Cluster: &ClusterConfig{GossipAddr: "0.0.0.0:0", Timing: fastTiming}})
	if err == nil || !strings.Contains(err.Error(), "--peer-addr") {
		t.Errorf("every address a wildcard: %v, want an error asking for --peer-addr", err)
	}
}
