package node

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestHTTPLimitReclaimsIdleConnections: with every slot held by an idle
// keep-alive connection, a new client is served at once (the longest idle
// is closed), not after the server's idle timeout (two minutes, here an
// hour). A client whose connection was closed is served again on a new
// one.
func TestHTTPLimitReclaimsIdleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limit := newHTTPLimit(ln, 2)
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		IdleTimeout: time.Hour,
		ConnState:   limit.state,
	}
	go srv.Serve(limit)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/"
	get := func(c *http.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	var clients []*http.Client
	for i := range 4 {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		t.Cleanup(c.CloseIdleConnections)
		clients = append(clients, c)
		// Each keeps its connection open and idle after its request: the
		// third and fourth find both slots idle.
		start := time.Now()
		if err := get(c); err != nil {
			t.Fatalf("client %d: %v (slots held by idle connections were not reclaimed)", i, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("client %d waited %v", i, took)
		}
	}
	// The first client's connection was closed for the third: it
	// reconnects (Go's transport retries a request on a reused connection
	// that was closed while idle).
	if err := get(clients[0]); err != nil {
		t.Fatalf("the first client again: %v", err)
	}
}

// TestHTTPLimitCloseWakesAWaitingAccept: with every slot busy (none idle)
// and a connection waiting for one, Shutdown keeps its deadline: it waits
// for Serve to return before it looks at its context, and Accept waited
// for a slot without watching Close (a review's finding on the first
// version: Node.Close hung while a request was in flight).
func TestHTTPLimitCloseWakesAWaitingAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limit := newHTTPLimit(ln, 1)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-release // a long request
			io.WriteString(w, "ok")
		}),
		ConnState: limit.state,
	}
	go srv.Serve(limit)
	defer close(release)
	url := "http://" + ln.Addr().String() + "/slow"
	go http.Get(url)
	<-started
	c2, err := net.Dial("tcp", ln.Addr().String()) // waits for the one slot
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// Accept has taken c2 from the kernel and waits for a slot: wait for
	// that (its connection is then not served, and Serve is in Accept).
	testutil.Eventually(t, 5*time.Second, "the second connection accepted and waiting", func() bool {
		return limit.waiting.Load()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want its deadline (a request was in flight)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown with a 200 ms deadline still running after 5 s")
	}
}
