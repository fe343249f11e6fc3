package node

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client request that reaches a cluster node while it is still setting
// up its cluster must wait for it: served then, it took the single-node
// path, stored with one copy and acknowledged whatever W asked for, on a
// node that may not even hold the key.
func TestClientsAreServedOnlyOnceTheClusterIsSetUp(t *testing.T) {
	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	testHookStartCluster = func(n *Node) {
		// Synchronous, with a short timeout: served now, it gets its 204
		// at once; held back, it times out.
		cl := &http.Client{Timeout: 200 * time.Millisecond}
		req, _ := http.NewRequest("PUT", "http://"+n.HTTPAddr()+"/kv/early", strings.NewReader(`"v"`))
		resp, err := cl.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode}
	}
	defer func() { testHookStartCluster = nil }()
	// A lone member with N=3 and W=2: a write served through the cluster
	// cannot be acknowledged.
	cc := &ClusterConfig{GossipAddr: "127.0.0.1:0", Timing: fastTiming, Timeout: 300 * time.Millisecond}
	n, err := Start(Config{Name: "n1", DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Partitions: 64, Cluster: cc})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a := <-answered
	if a.err == nil && a.status == http.StatusNoContent {
		t.Fatalf("a PUT sent while the cluster was being set up was acknowledged (204) by a lone member with N=3, W=2")
	}
	// And once it is set up, writes go through the cluster.
	req, _ := http.NewRequest("PUT", "http://"+n.HTTPAddr()+"/kv/later", strings.NewReader(`"v"`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		t.Fatalf("a lone member with N=3, W=2 acknowledged a PUT")
	}
}
