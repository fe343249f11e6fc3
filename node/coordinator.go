package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// Transport carries peer calls to other nodes, by member name. A call to
// an unreachable node fails by its context's deadline (or at once if the
// node is known to be down); it never hangs past the deadline.
type Transport interface {
	Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error)
}

// CoordinatorConfig configures a Coordinator. Zero fields mean defaults.
type CoordinatorConfig struct {
	// Self is this node's member name. Required.
	Self string
	// Store is this node's local state. Required.
	Store *store.Store
	// Transport reaches the other members. Required.
	Transport Transport
	// Replicas (N), R and W: defaults 3, 2 and 2.
	Replicas, R, W int
	// Timeout bounds a request's peer calls. Default 1s.
	Timeout time.Duration
	// HedgeAfter is how long a read waits for the replicas it asked before
	// asking one more. Default 20ms.
	HedgeAfter time.Duration
	// Clock gives write times. Default time.Now.
	Clock func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
}

// Validate reports every problem at once.
func (c CoordinatorConfig) Validate() error {
	var errs []error
	if c.Self == "" {
		errs = append(errs, errors.New("node: coordinator Self is required"))
	}
	if c.Store == nil || c.Transport == nil {
		errs = append(errs, errors.New("node: coordinator Store and Transport are required"))
	}
	n := c.Replicas
	if n == 0 {
		n = 3
	}
	if c.R < 0 || c.W < 0 || c.R > n || c.W > n || n < 0 {
		errs = append(errs, fmt.Errorf("node: need 0 < R, W <= N; got N=%d R=%d W=%d", n, c.R, c.W))
	}
	return errors.Join(errs...)
}

// Coordinator makes one node of a cluster serve any key: a write goes to a
// replica of the key's partition (this node, or one it forwards to), which
// applies it locally, sends the new object to the other replicas, and
// answers once W of them (itself included) hold it; a read asks the
// replicas, waits for R, and merges their objects. Replicas that answer
// after the quorum still apply the write. Placement comes from SetMembers.
//
// Peer methods (HandlePeer): "get" and "merge" are a replica's part;
// "put", "del" and "incr" run a forwarded write as coordinator.
type Coordinator struct {
	cfg   CoordinatorConfig
	place atomic.Pointer[ring.Placement]
}

// NewCoordinator checks cfg. Call SetMembers before serving.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.R == 0 {
		cfg.R = min(2, cfg.Replicas)
	}
	if cfg.W == 0 {
		cfg.W = min(2, cfg.Replicas)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.HedgeAfter == 0 {
		cfg.HedgeAfter = 20 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{cfg: cfg}, nil
}

// SetMembers recomputes placement for the ring members (names; this node
// among them). Safe to call while serving.
func (c *Coordinator) SetMembers(members []string) error {
	p, err := ring.Compute(ring.PlacementConfig{Partitions: c.cfg.Store.Partitions(), Replicas: c.cfg.Replicas}, members)
	if err != nil {
		return err
	}
	c.place.Store(p)
	return nil
}

// QuorumError says how many replicas answered of how many were needed.
type QuorumError struct {
	Op       string // "read" or "write"
	Got      int    // replicas that answered (or acknowledged)
	Need     int    // R or W
	Replicas int    // N for the key
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("quorum not reached for %s: %d of %d required replicas answered (%d replicas)", e.Op, e.Got, e.Need, e.Replicas)
}

func (c *Coordinator) replicas(key []byte) (uint32, []string, error) {
	p := c.place.Load()
	if p == nil {
		return 0, nil, errors.New("node: no cluster members yet")
	}
	part := ring.Partition(key, p.Partitions())
	return part, p.Replicas(part), nil
}

// Get implements wire.Backend: a quorum read.
func (c *Coordinator) Get(ctx context.Context, key []byte) (crdt.Object, error) {
	part, reps, err := c.replicas(key)
	if err != nil {
		return crdt.Object{}, err
	}
	need := c.cfg.R
	if q := wire.QuorumFrom(ctx).R; q > 0 {
		need = q
	}
	if need > len(reps) {
		return crdt.Object{}, fmt.Errorf("R=%d exceeds the %d replicas of the key", need, len(reps))
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	type answer struct {
		obj crdt.Object
		err error
	}
	answers := make(chan answer, len(reps))
	var remotes []string
	for _, r := range reps {
		if r == c.cfg.Self { // the local answer needs no goroutine
			o, _, err := c.cfg.Store.Get(part, key)
			answers <- answer{o, err}
			continue
		}
		remotes = append(remotes, r)
	}
	ask := func(r string) {
		go func() {
			res, err := c.cfg.Transport.Call(ctx, r, "get", key)
			if err == nil && len(res) != 1 {
				err = errors.New("malformed get reply")
			}
			var o crdt.Object
			if err == nil && len(res[0]) > 0 {
				o, err = crdt.Decode(res[0])
			}
			answers <- answer{o, err}
		}()
	}
	// Ask just enough replicas for R, as Cassandra does, and one more
	// whenever an answer fails or none came within the hedge delay: a
	// healthy read costs R-1 peer calls instead of N-1, and a black-holed
	// replica costs a read the hedge delay, not the timeout.
	asked := len(reps) - len(remotes) // the local one, if any
	for asked < need && len(remotes) > 0 {
		ask(remotes[0])
		remotes, asked = remotes[1:], asked+1
	}
	hedge := time.NewTimer(c.cfg.HedgeAfter)
	defer hedge.Stop()
	var merged crdt.Object
	got, pending := 0, asked
	for pending > 0 {
		select {
		case a := <-answers:
			pending--
			if a.err != nil {
				c.cfg.Logger.Debug("replica read failed", "err", a.err)
				if len(remotes) > 0 {
					ask(remotes[0])
					remotes, pending = remotes[1:], pending+1
				}
				continue
			}
			merged = crdt.Merge(merged, a.obj)
			if got++; got >= need {
				return merged, nil
			}
		case <-hedge.C:
			if len(remotes) > 0 {
				ask(remotes[0])
				remotes, pending = remotes[1:], pending+1
				hedge.Reset(c.cfg.HedgeAfter)
			}
		}
	}
	return crdt.Object{}, &QuorumError{Op: "read", Got: got, Need: need, Replicas: len(reps)}
}

// Put implements wire.Backend.
func (c *Coordinator) Put(ctx context.Context, key, value []byte, opts wire.WriteOptions) error {
	_, err := c.write(ctx, key, "put", [][]byte{key, value, encodeOpts(opts)}, putFn(c.cfg.Store.Actor(), value, opts, c.cfg.Clock), true)
	return err
}

// Delete implements wire.Backend. Without a context it deletes what a
// quorum read finds, so that a value this coordinator has not received
// yet is deleted too.
func (c *Coordinator) Delete(ctx context.Context, key []byte, opts wire.WriteOptions) (bool, error) {
	var existed bool
	if !opts.HasContext {
		cur, err := c.Get(ctx, key)
		if err != nil {
			return false, err
		}
		existed = cur.Kind() != crdt.KindNone
		opts = wire.WriteOptions{Context: cur.Reg.Context, HasContext: true}
	}
	var local bool
	res, err := c.write(ctx, key, "del", [][]byte{key, encodeOpts(opts)}, deleteFn(c.cfg.Store.Actor(), opts, c.cfg.Clock, &local), true)
	if len(res) == 1 { // forwarded: the coordinator's answer
		local = string(res[0]) == "1"
	}
	if errors.Is(err, errNothingToDo) {
		err = nil
	}
	return existed || local, err
}

// Incr implements wire.Backend.
func (c *Coordinator) Incr(ctx context.Context, key []byte, delta int64) (int64, error) {
	var value int64
	res, err := c.write(ctx, key, "incr", [][]byte{key, []byte(strconv.FormatInt(delta, 10))}, func(cur crdt.Object, found bool) (crdt.Object, error) {
		o, err := incrFn(c.cfg.Store.Actor(), delta)(cur, found)
		value = o.Cnt.Value()
		return o, err
	}, true)
	if err == nil && len(res) == 1 {
		value, err = strconv.ParseInt(string(res[0]), 10, 64)
	}
	return value, err
}

// write runs a write as coordinator if this node is a replica of key, or
// forwards it (method, args) to the first replica that takes it, and
// returns the forwarded call's results. A forwarded write (mayForward
// false) is never forwarded again, so a placement change cannot loop it.
func (c *Coordinator) write(ctx context.Context, key []byte, method string, args [][]byte, fn func(crdt.Object, bool) (crdt.Object, error), mayForward bool) ([][]byte, error) {
	part, reps, err := c.replicas(key)
	if err != nil {
		return nil, err
	}
	w := c.cfg.W
	if q := wire.QuorumFrom(ctx).W; q > 0 {
		w = q
	}
	if w > len(reps) {
		return nil, fmt.Errorf("W=%d exceeds the %d replicas of the key", w, len(reps))
	}
	if !slices.Contains(reps, c.cfg.Self) {
		if !mayForward {
			return nil, errNotReplica
		}
		return c.forward(ctx, reps, method, append(args, []byte(strconv.Itoa(w))))
	}
	// Apply locally, and let the local fsync run while the other replicas
	// store the object: the local copy counts once it is durable.
	var localWait func() error
	obj, err := c.cfg.Store.UpdateDeferred(part, key, fn, func(wait func() error) { localWait = wait })
	if err != nil {
		return nil, err
	}
	return nil, c.replicate(ctx, key, obj, reps, w, localWait)
}

var errNotReplica = errors.New("node: this node is not a replica of the key (placement changed); retry")

// replicate sends obj to the other replicas and waits until w replicas
// hold it durably: this one once localWait returns (nil localWait: it
// already does) and the others as they acknowledge. Calls that finish after
// the quorum still apply; all are bounded by the coordinator's timeout.
func (c *Coordinator) replicate(ctx context.Context, key []byte, obj crdt.Object, reps []string, w int, localWait func() error) error {
	others := make([]string, 0, len(reps))
	for _, r := range reps {
		if r != c.cfg.Self {
			others = append(others, r)
		}
	}
	callCtx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	results := make(chan error, len(others)+1)
	pending := len(others)
	acks := 1
	if localWait != nil {
		acks = 0
		pending++
		go func() { results <- localWait() }()
	}
	if len(others) > 0 {
		enc := obj.Encode()
		for _, r := range others {
			go func() {
				_, err := c.cfg.Transport.Call(callCtx, r, "merge", key, enc)
				if err != nil {
					c.cfg.Logger.Debug("replica write failed", "replica", r, "err", err)
				}
				results <- err
			}()
		}
	}
	defer func() { // release the calls' context once the stragglers are back
		left := pending
		go func() {
			for i := 0; i < left; i++ {
				<-results
			}
			cancel()
		}()
	}()
	for acks < w && pending > 0 {
		select {
		case err := <-results:
			pending--
			if err == nil {
				acks++
			}
		case <-ctx.Done():
			return &QuorumError{Op: "write", Got: acks, Need: w, Replicas: len(reps)}
		}
	}
	if acks >= w {
		return nil
	}
	return &QuorumError{Op: "write", Got: acks, Need: w, Replicas: len(reps)}
}

// forward hands a write to the first replica that takes it. A replica
// that is unreachable at once is skipped; one that times out is not
// retried elsewhere, since it may have applied the write.
func (c *Coordinator) forward(ctx context.Context, reps []string, method string, args [][]byte) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Timeout) // its own quorum wait, plus the hop
	defer cancel()
	var last error
	for _, r := range reps {
		res, err := c.cfg.Transport.Call(ctx, r, method, args...)
		if err == nil {
			return res, nil
		}
		var pe *wire.PeerError
		if errors.As(err, &pe) {
			return nil, peerError(pe)
		}
		last = err
		if !errors.Is(err, wire.ErrPeerUnavailable) {
			break
		}
	}
	return nil, fmt.Errorf("node: no replica took the write: %w", last)
}

// peerError turns a forwarded coordinator's error back into the sentinel
// it was, so the client sees the same reply as from a local coordinator.
func peerError(pe *wire.PeerError) error {
	for _, e := range []error{wire.ErrWrongType, crdt.ErrOverflow} {
		if pe.Msg == e.Error() {
			return e
		}
	}
	return errors.New(pe.Msg)
}

// encodeOpts and decodeOpts carry WriteOptions over a peer call.
func encodeOpts(o wire.WriteOptions) []byte {
	if !o.HasContext {
		return []byte("-")
	}
	return []byte(o.Context.Token())
}

func decodeOpts(b []byte) (wire.WriteOptions, error) {
	if string(b) == "-" {
		return wire.WriteOptions{}, nil
	}
	ctx, err := crdt.ParseToken(string(b))
	return wire.WriteOptions{Context: ctx, HasContext: true}, err
}

// HandlePeer serves the peer methods (wire.PeerHandler).
func (c *Coordinator) HandlePeer(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
	need := map[string]int{"get": 1, "merge": 2, "put": 4, "del": 3, "incr": 3}[method]
	if need == 0 {
		return nil, fmt.Errorf("unknown peer method %q", method)
	}
	if len(args) != need {
		return nil, fmt.Errorf("peer method %s takes %d arguments, not %d", method, need, len(args))
	}
	key := args[0]
	if method == "put" || method == "del" || method == "incr" { // forwarded writes carry W last
		w, err := strconv.Atoi(string(args[len(args)-1]))
		if err != nil || w < 1 {
			return nil, fmt.Errorf("bad W %q", args[len(args)-1])
		}
		ctx = wire.WithQuorum(ctx, wire.Quorum{W: w})
	}
	switch method {
	case "get":
		p := c.place.Load()
		if p == nil {
			return nil, errors.New("node: no cluster members yet")
		}
		o, found, err := c.cfg.Store.Get(ring.Partition(key, p.Partitions()), key)
		if err != nil || !found {
			return [][]byte{nil}, err
		}
		return [][]byte{o.Encode()}, nil
	case "merge":
		o, err := crdt.Decode(args[1])
		if err != nil {
			return nil, err
		}
		_, err = c.cfg.Store.Merge(ring.Partition(key, c.cfg.Store.Partitions()), key, o)
		return nil, err
	case "put":
		opts, err := decodeOpts(args[2])
		if err != nil {
			return nil, err
		}
		_, err = c.write(ctx, key, method, nil, putFn(c.cfg.Store.Actor(), args[1], opts, c.cfg.Clock), false)
		return nil, err
	case "del":
		opts, err := decodeOpts(args[1])
		if err != nil {
			return nil, err
		}
		var existed bool
		_, err = c.write(ctx, key, method, nil, deleteFn(c.cfg.Store.Actor(), opts, c.cfg.Clock, &existed), false)
		return [][]byte{[]byte(map[bool]string{true: "1", false: "0"}[existed])}, err
	default: // incr
		delta, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			return nil, err
		}
		var value int64
		_, err = c.write(ctx, key, method, nil, func(cur crdt.Object, found bool) (crdt.Object, error) {
			o, err := incrFn(c.cfg.Store.Actor(), delta)(cur, found)
			value = o.Cnt.Value()
			return o, err
		}, false)
		return [][]byte{[]byte(strconv.FormatInt(value, 10))}, err
	}
}
