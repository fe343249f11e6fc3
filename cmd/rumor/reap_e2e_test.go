package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestKilledNodeIsReapedAndItsHintsDrain runs nodes with a short
// --reconnect-timeout: a node killed for longer is forgotten (reaped),
// INFO says so, and the hints the others kept for it go to the replicas
// that hold its partitions now and are deleted, so hints_pending comes
// back to 0 instead of waiting for a node that will not return.
func TestKilledNodeIsReapedAndItsHintsDrain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := freeBase(t, 3)
	t.Cleanup(func() { exec.Command(binary, "cluster", "down", "--dir", dir).Run() })
	if out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--nodes", "3",
		"--node-arg=--reconnect-timeout=2s").CombinedOutput(); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	c1 := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base), MaxRetries: -1})
	defer c1.Close()
	ctx := context.Background()
	mustCluster(t, dir, "kill", "n3")
	for i := range 50 {
		if err := c1.Set(ctx, fmt.Sprint("k", i), fmt.Sprint("v", i), 0).Err(); err != nil {
			t.Fatalf("W=2 with n3 killed: %v", err)
		}
	}
	pending := regexp.MustCompile(`(?m)^hints_pending:(\d+)`)
	hints := func() string {
		m := pending.FindStringSubmatch(c1.Info(ctx, "cluster").Val())
		if m == nil {
			t.Fatalf("no hints_pending in INFO cluster:\n%s", c1.Info(ctx, "cluster").Val())
		}
		return m[1]
	}
	if h := hints(); h == "0" {
		t.Fatal("no hints kept for the killed n3: the test proves nothing")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c1.Info(ctx, "cluster").Val(), "member_n3:status=reaped") {
		if time.Now().After(deadline) {
			t.Fatalf("n3 not reaped 30s after its kill with --reconnect-timeout=2s:\n%s", c1.Info(ctx, "cluster").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for hints() != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("hints for the reaped n3 still pending:\n%s", c1.Info(ctx, "cluster").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 50 {
		if v, err := c1.Get(ctx, fmt.Sprint("k", i)).Result(); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("k%d after n3 was reaped: %q, %v", i, v, err)
		}
	}
}
