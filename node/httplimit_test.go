package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
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
