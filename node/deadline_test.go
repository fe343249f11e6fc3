package node

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestDeadlinesAreSharedWithinTheirSlack: requests that start within one
// slack share a context; each expires between d and d+slack after its
// request started, never before d.
func TestDeadlinesAreSharedWithinTheirSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dl := newDeadlines(time.Second) // slack 10ms
		start := time.Now()
		a := dl.get()
		time.Sleep(9 * time.Millisecond)
		if b := dl.get(); b != a {
			t.Fatal("a request 9ms later got another context: one timer each again")
		}
		time.Sleep(time.Millisecond)
		c := dl.get()
		if c == a {
			t.Fatal("a request one slack later got the old context: its deadline would come early")
		}
		for _, tc := range []struct {
			ctx     context.Context
			started time.Time
		}{{a, start}, {c, start.Add(10 * time.Millisecond)}} {
			d, ok := tc.ctx.Deadline()
			if left := d.Sub(tc.started); !ok || left < time.Second || left > time.Second+10*time.Millisecond {
				t.Fatalf("deadline %v after the request started, want between 1s and 1.01s", left)
			}
		}
		time.Sleep(time.Second + 5*time.Millisecond) // past a's deadline, before c's
		if !errors.Is(a.Err(), context.DeadlineExceeded) || c.Err() != nil {
			t.Fatalf("a: %v, c: %v", a.Err(), c.Err())
		}
	})
}
