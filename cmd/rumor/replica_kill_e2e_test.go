package main

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestReplicaCopiesSurviveSIGKILL: a replica acknowledges a copy only once
// it is on its disk. Writes with W=3 go through n1 and n3, plain and
// pipelined (a replica applies a pipeline's copies together and fsyncs
// them once), while n2 is SIGKILLed; once n2 is back, its own copy (VGET R 1
// answers from the local store first) of every acknowledged write must be
// there. A W=3 write leaves no hint behind, so nothing but n2's disk can
// hold the copy it acknowledged. The nodes run with --sync-window, so
// that copies wait for a later fsync than their own.
func TestReplicaCopiesSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	rounds := 4 // each round's kill loses an early-acknowledged copy only by chance
	if testing.Short() {
		rounds = 1
	}
	dir := t.TempDir()
	base := freeBase(t, 3)
	t.Cleanup(func() { exec.Command(binary, "cluster", "down", "--dir", dir).Run() })
	if out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--nodes", "3",
		"--node-arg=--request-timeout=2s", "--node-arg=--sync-window=300us").CombinedOutput(); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	client := func(i int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base+i-1), MaxRetries: -1, PoolSize: 16})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2, c3 := client(1), client(2), client(3)
	var mu sync.Mutex
	acked := map[string]string{}
	for round := range rounds {
		var wg sync.WaitGroup
		var n atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		for w := range 8 {
			c := []*redis.Client{c1, c3}[w%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					pipe := c.Pipeline()
					batch := 1 + w%4*3 // 1, 4, 7 or 10 writes at once
					cmds := make([]*redis.Cmd, batch)
					for j := range cmds {
						k := fmt.Sprintf("r%d:w%d:%d:%d", round, w, i, j)
						cmds[j] = pipe.Do(ctx, "SET", k, "v"+k, "W", "3")
					}
					pipe.Exec(ctx)
					for j, cmd := range cmds {
						if cmd.Err() != nil {
							return // n2 is down: W=3 cannot be met
						}
						k := fmt.Sprintf("r%d:w%d:%d:%d", round, w, i, j)
						mu.Lock()
						acked[k] = "v" + k
						mu.Unlock()
						n.Add(1)
					}
				}
			}()
		}
		for deadline := time.Now().Add(30 * time.Second); n.Load() < 500 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		mustCluster(t, dir, "kill", "n2")
		wg.Wait()
		cancel()
		mustCluster(t, dir, "start", "n2")
		// Back once both coordinators can reach n2 again.
		for deadline := time.Now().Add(30 * time.Second); ; {
			ctx := context.Background()
			if c1.Do(ctx, "SET", "probe", "1", "W", "3").Err() == nil && c3.Do(ctx, "SET", "probe", "1", "W", "3").Err() == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n2 did not come back:\n%s", c1.Info(ctx, "cluster").Val())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(acked) < 500*rounds {
		t.Fatalf("only %d writes acknowledged: the test proves little", len(acked))
	}
	ctx := context.Background()
	for i, c := range []*redis.Client{c1, c2, c3} {
		lost := 0
		for k, v := range acked {
			vals, err := c.Do(ctx, "VGET", k, "R", "1").Slice()
			if err != nil || len(vals) != 2 || vals[1] != v {
				if lost++; lost <= 5 {
					t.Errorf("n%d: acknowledged SET %s %s W 3, its copy: %v, %v", i+1, k, v, vals, err)
				}
			}
		}
		if lost > 0 {
			t.Errorf("n%d lost its copy of %d of %d writes acknowledged with W=3", i+1, lost, len(acked))
		}
	}
	t.Logf("%d rounds, %d writes acknowledged with W=3 while n2 was SIGKILLed; every replica's copy checked", rounds, len(acked))
}
