package wire

import (
	"context"
	"net"
	"testing"
	"time"
)

// A call's deadline bounds it even while another call to the same peer is
// dialling a peer that does not answer (a host that drops SYNs): calls
// must not queue behind that dial past their own deadlines.
func TestPeerCallDeadlineHoldsWhileAnotherCallDials(t *testing.T) {
	t.Parallel()
	dialing := make(chan struct{}, 1)
	c := NewPeerClient("192.0.2.1:1", PeerClientConfig{
		DialTimeout: 2 * time.Second,
		CallTimeout: 2 * time.Second,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			select {
			case dialing <- struct{}{}:
			default:
			}
			<-ctx.Done() // a black-holed peer: the dial ends only with its timeout
			return nil, ctx.Err()
		},
	})
	defer c.Close()
	go c.Call(context.Background(), "ping") // dials, for up to 2s
	<-dialing
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, "ping")
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("a call with a 50ms deadline returned after %v (%v)", took, err)
	}
}
