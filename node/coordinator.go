package node

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// asyncTransport is a Transport that can also start a call and report its
// outcome to done, exactly once, without a goroutine per call
// (wire.PeerClient.Go): done must not block. A coordinator waits on
// several calls per request, and a goroutine each was a tenth of its CPU
// under redis-benchmark. Transports without it get a goroutine per call.
type asyncTransport interface {
	Go(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error))
}

// lazyTransport is an asyncTransport that can also start a call that
// waits, for a bounded time, to leave with the next call to the same
// member (wire.PeerClient.GoLazy): background work, such as a read
// repair's check of a replica the read did not ask.
type lazyTransport interface {
	GoLazy(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error))
}

// queuedTransport is a Transport that can tell whether calls to a member
// are waiting to be written (wire.PeerClient.Queued): a call to it now
// would leave in the same write, and wake it no more than they do.
type queuedTransport interface {
	Queued(to string) bool
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
	// ReadRepairChance is the share of reads that, after answering, also
	// ask the preferred replicas they did not need and repair them, as
	// Cassandra's read_repair_chance: a read asks only R copies, so without
	// it the others are repaired only by hints and anti-entropy. Default
	// 0.1; negative never.
	ReadRepairChance float64
	// Strict turns sloppy quorum off by default (a request may still ask
	// for it with SLOPPY yes): only the preferred replicas count towards R
	// and W, and a write fails rather than leave a hint.
	Strict bool
	// WriteHedge is how long a sloppy write waits for a preferred replica's
	// acknowledgement before it also hands a hinted copy to a stand-in,
	// which counts towards W once the replica's own copy fails (not
	// before: see replicate). Default 50ms.
	WriteHedge time.Duration
	// Breaker tunes the per-peer circuit breakers.
	Breaker BreakerConfig
	// Handoff tunes hinted handoff.
	Handoff HandoffConfig
	// Objects bounds what a client's write may grow an object to (the
	// node's Config.Objects); zero: no bound.
	Objects ObjectLimits
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
	cfg     CoordinatorConfig
	tr      *breakers // cfg.Transport behind a breaker per peer
	place   atomic.Pointer[ring.Placement]
	down    atomic.Pointer[map[string]bool] // members gossip reports failed
	left    atomic.Pointer[map[string]bool] // members that left for good (their hints go to the replicas)
	repairs chan struct{}                   // read repairs in flight
	calls   *deadlines                      // the contexts of requests' peer calls
	// readHedges and writeHedges time the hedges of reads (HedgeAfter)
	// and writes (WriteHedge): a request waits on the Done channel of a
	// context it shares with the requests that started within the same
	// slack, instead of starting and stopping a timer of its own (2-4%
	// of a coordinator's CPU under redis-benchmark).
	readHedges, writeHedges *deadlines

	stats   coordStats
	handoff handoff
	// forwards orders the writes this node forwards, per key.
	forwards keyTurns
}

// keyTurns orders operations per key: enter takes a turn, in call order;
// wait returns once every earlier turn of the key has left.
type keyTurns struct {
	live atomic.Int64 // turns entered and not yet left: settled's fast path
	mu   sync.Mutex
	tail map[string]*keyTurn // the key's last turn
}

type keyTurn struct {
	turns *keyTurns
	key   string
	prev  chan struct{} // closed when the turn before leaves; nil if none
	done  chan struct{}
}

func (t *keyTurns) enter(key []byte) *keyTurn {
	turn := &keyTurn{turns: t, key: string(key), done: make(chan struct{})}
	t.live.Add(1)
	t.mu.Lock()
	if t.tail == nil {
		t.tail = map[string]*keyTurn{}
	}
	if last := t.tail[turn.key]; last != nil {
		turn.prev = last.done
	}
	t.tail[turn.key] = turn
	t.mu.Unlock()
	return turn
}

func (turn *keyTurn) wait() {
	if turn.prev != nil {
		<-turn.prev
	}
}

func (turn *keyTurn) leave() {
	close(turn.done)
	t := turn.turns
	t.mu.Lock()
	if t.tail[turn.key] == turn {
		delete(t.tail, turn.key)
	}
	t.mu.Unlock()
	t.live.Add(-1)
}

// settled returns once every turn of key taken so far has left.
func (t *keyTurns) settled(key []byte) {
	if t.live.Load() == 0 { // no forward in flight: most calls
		return
	}
	t.mu.Lock()
	last := t.tail[string(key)]
	t.mu.Unlock()
	if last != nil {
		<-last.done
	}
}

// coordStats are the coordinator's counters (see Stats).
type coordStats struct {
	readRepairs, repairsSkipped       atomic.Uint64
	hintedWrites, hintsDelivered      atomic.Uint64
	hintsDropped, hintDeliveryFailure atomic.Uint64
	// copiesInFlight counts the copies sent to other nodes (by writes,
	// after their quorum too, and by read repairs) whose outcome is not
	// known yet: one that fails then leaves a hint.
	copiesInFlight atomic.Int64
}

// maxRepairs bounds the read repairs in flight; past it a repair is
// skipped (and counted), since anti-entropy repairs what reads do not.
const maxRepairs = 64

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
	if cfg.ReadRepairChance == 0 {
		cfg.ReadRepairChance = 0.1
	}
	if cfg.WriteHedge == 0 {
		cfg.WriteHedge = 50 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Handoff = cfg.Handoff.withDefaults()
	c := &Coordinator{cfg: cfg, repairs: make(chan struct{}, maxRepairs), calls: newDeadlines(cfg.Timeout),
		readHedges: newDeadlines(cfg.HedgeAfter), writeHedges: newDeadlines(cfg.WriteHedge)}
	c.tr = newBreakers(cfg.Transport, cfg.Breaker, cfg.Clock)
	c.down.Store(&map[string]bool{})
	c.left.Store(&map[string]bool{})
	c.startHandoff()
	return c, nil
}

// SetMembers recomputes placement for the ring members (names; this node
// among them). Safe to call while serving.
func (c *Coordinator) SetMembers(members []string) error {
	p, err := ring.Compute(ring.PlacementConfig{Partitions: c.cfg.Store.Partitions(), Replicas: c.cfg.Replicas}, members)
	if err != nil {
		return err
	}
	c.place.Store(p)
	c.kickHandoff()
	return nil
}

// SetDown tells the coordinator which members gossip reports failed: they
// are not asked, and writes go to stand-ins in their place. Members that
// come back get their hints. Safe to call while serving.
func (c *Coordinator) SetDown(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	var back []string
	for n := range *c.down.Swap(&m) {
		if !m[n] {
			c.tr.reset(n) // back: try it at once
			back = append(back, n)
		}
	}
	c.revive(back)
	c.kickHandoff()
}

// SetLeft records the members gossip reports left for good (removed, or
// forgotten after a failure). Hints for them are delivered to the keys'
// replicas instead; hints for a name this node merely does not know (yet)
// are kept.
func (c *Coordinator) SetLeft(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	c.left.Store(&m)
	c.tr.forget(names)
	c.kickHandoff()
}

// reachable reports whether a write or read should count on member:
// itself always; another unless gossip reports it failed or its breaker
// is open.
func (c *Coordinator) reachable(member string) bool {
	if member == c.cfg.Self {
		return true
	}
	return !(*c.down.Load())[member] && c.tr.Allows(member)
}

// QuorumError says how many replicas answered of how many were needed.
type QuorumError struct {
	Op       string // "read" or "write"
	Got      int    // replicas that answered (or acknowledged)
	Need     int    // R or W
	Replicas int    // N for the key
}

// Unavailable marks it as the cluster's state, not the request's fault
// (wire.Unavailable: HTTP 503).
func (e *QuorumError) Unavailable() bool { return true }

func (e *QuorumError) Error() string {
	return fmt.Sprintf("quorum not reached for %s: %d of %d required replicas answered (%d replicas)", e.Op, e.Got, e.Need, e.Replicas)
}

// route is where a key's copies go: its partition, its preferred
// replicas, and the placement whose ranking holds the fallbacks after
// them, computed only when asked for (spares.next: they cost O(M log M) in
// the members, 11µs at 100, and a healthy request never needs them).
type route struct {
	part    uint32
	reps    []string
	members int
	place   *ring.Placement
}

// spares returns the source of stand-ins for a request on rt that c
// coordinates (see spares).
func (rt route) spares(c *Coordinator, self string, exclude []string, sloppy bool) spares {
	return spares{place: rt.place, part: rt.part, nreps: len(rt.reps), self: self, c: c, exclude: exclude, sloppy: sloppy}
}

func (c *Coordinator) route(key []byte) (route, error) {
	p := c.place.Load()
	if p == nil {
		return route{}, errors.New("node: no cluster members yet")
	}
	part := ring.Partition(key, p.Partitions())
	reps := p.Replicas(part)
	return route{part: part, reps: reps, members: len(p.Members()), place: p}, nil
}

// replicas returns key's partition and preferred replicas.
func (c *Coordinator) replicas(key []byte) (uint32, []string, error) {
	rt, err := c.route(key)
	return rt.part, rt.reps, err
}

// sloppy reports whether the request in ctx may count stand-ins.
func (c *Coordinator) sloppy(ctx context.Context) bool {
	return wire.QuorumFrom(ctx).Sloppy.Resolve(!c.cfg.Strict)
}

// Get implements wire.Backend: a quorum read. It asks the copies a write
// would make now (the reachable preferred replicas and, when sloppy, the
// stand-ins for the others), merges R answers, and sends the merged object
// back to every preferred replica whose answer it dominates (read repair).
func (c *Coordinator) Get(ctx context.Context, key []byte) (crdt.Object, error) {
	key = bytes.Clone(key) // hedged and late fetches outlive the call (see write)
	rt, err := c.route(key)
	if err != nil {
		return crdt.Object{}, err
	}
	part, n := rt.part, len(rt.reps)
	// Read this node's writes of the key: the ones it is still forwarding
	// (a pipeline's SETs) land first, also if a placement change has made
	// this node a replica of the key meanwhile.
	c.forwards.settled(key)
	need := c.cfg.R
	if q := wire.QuorumFrom(ctx).R; q > 0 {
		need = q
	}
	if need > n {
		return crdt.Object{}, &QuorumTooLargeError{Param: "R", Need: need, Replicas: n}
	}
	// Sloppy: the copies a write would make now, then the other fallbacks
	// (in case a copy fails): a stand-in answers with what it holds.
	// Strict: every preferred replica (an unreachable one fails fast).
	var copyBuf [maxStackCopies]copySlot
	copies := copyBuf[:0]
	var spare spares // strict: none
	if c.sloppy(ctx) {
		spare = rt.spares(c, "", nil, true)
		copies = planCopies(copyBuf[:0], rt.reps, &spare)
		// The preferred replicas first, then the stand-ins: a stand-in
		// holds only what was written while it stood in, so two of them
		// made R=2 with nothing while a reachable preferred replica held
		// the key (a read after two of three replicas failed was nil).
		// Any R of these copies still meet any W a write made of them.
		if slices.ContainsFunc(copies, func(s copySlot) bool { return s.hintFor != "" }) { // not when all are up
			slices.SortStableFunc(copies, func(a, b copySlot) int {
				return cmp.Compare(min(len(a.hintFor), 1), min(len(b.hintFor), 1))
			})
		}
	} else {
		for _, r := range rt.reps {
			copies = append(copies, copySlot{node: r})
		}
	}
	callCtx := c.calls.get() // Timeout (plus a little): fetches fail by then
	type answer struct {
		from copySlot
		obj  crdt.Object
		err  error
		same bool // obj is this node's own copy, sent back by another replica
	}
	answers := make(chan answer, rt.members+1)
	// This node's own copy, read before any call goes out: a replica
	// that sends the same encoding back holds the same object, which
	// needs neither decoding nor merging (the usual case, replicas in
	// agreement).
	var own struct {
		obj crdt.Object
		raw []byte
		ok  bool
	}
	pending := 0 // answers to wait for
	ask := func(s copySlot) {
		pending++
		if s.node == c.cfg.Self { // a stand-in's copy here: no goroutine
			o, _, _, err := c.cfg.Store.GetWithEncoding(part, key)
			answers <- answer{from: s, obj: o, err: err}
			return
		}
		ownObj, ownRaw, ownOK := own.obj, own.raw, own.ok // copied into the callback: own stays on the stack
		c.tr.Go(callCtx, s.node, "get", [][]byte{key}, func(res [][]byte, err error) {
			if err == nil && ownOK && len(res) == 1 && bytes.Equal(res[0], ownRaw) {
				answers <- answer{from: s, obj: ownObj, same: true}
				return
			}
			o, err := decodeFetched(res, err)
			answers <- answer{from: s, obj: o, err: err} // room for every answer: never blocks
		})
	}
	// Ask just enough copies for R, as Cassandra does (this node's own
	// first, if it is a preferred replica), and one more whenever an answer fails or
	// none came within the hedge delay: a healthy read costs R-1 peer calls
	// instead of N-1, and a black-holed replica costs a read the hedge
	// delay, not the timeout. This node's own answer is taken at once,
	// not through the channel (a send and a select less a read).
	remotes := copies
	var local answer
	if i := slices.IndexFunc(copies, func(s copySlot) bool { return s.node == c.cfg.Self && s.hintFor == "" }); i >= 0 {
		local.from = copies[i]
		local.obj, own.raw, _, local.err = c.cfg.Store.GetWithEncoding(part, key)
		own.obj, own.ok = local.obj, local.err == nil
		remotes = slices.Delete(copies, i, i+1) // copies is this call's own; only its length counts below
	}
	// more refills remotes from the spare fallbacks once it runs out.
	more := func() bool {
		if len(remotes) == 0 {
			if f, ok := spare.next(); ok {
				remotes = []copySlot{{node: f, hintFor: notACopy}}
			}
		}
		return len(remotes) > 0
	}
	asked := len(copies) - len(remotes)
	preferQueued(remotes, c.tr)
	for asked < need && more() {
		ask(remotes[0])
		remotes, asked = remotes[1:], asked+1
	}
	var merged crdt.Object
	var gotBuf [maxStackCopies]answer
	got := gotBuf[:0]
	// take settles an answer, asking one more copy for a failed one; it
	// reports whether the read has its R answers (merged is its result).
	take := func(a answer) bool {
		if a.err != nil {
			c.cfg.Logger.Debug("replica read failed", "replica", a.from.node, "err", a.err)
			if more() {
				ask(remotes[0])
				remotes = remotes[1:]
			}
			return false
		}
		if !a.same { // a same answer's object is own's, merged already: own's answer is taken before any other
			merged = crdt.Merge(merged, a.obj)
		}
		got = append(got, a)
		return len(got) >= need
	}
	done := func() (crdt.Object, error) {
		for _, g := range got {
			if g.from.hintFor == "" && !g.obj.Descends(merged) {
				c.repair(part, key, g.from.node, merged, false)
			}
		}
		if c.cfg.ReadRepairChance > 0 && rand.Float64() < c.cfg.ReadRepairChance {
			for _, s := range remotes {
				if s.hintFor == "" { // a preferred replica this read did not ask
					c.repair(part, key, s.node, merged, true)
				}
			}
		}
		return merged, nil
	}
	if local.from.node != "" && take(local) {
		return done()
	}
	hedge := c.readHedges.get().Done() // closes HedgeAfter from now, give or take a tenth
	for pending > 0 {
		select {
		case a := <-answers:
			pending--
			if take(a) {
				return done()
			}
		case <-hedge:
			// Another copy, not a fallback that holds none: a fallback
			// stands in for a copy that failed (take), never for one that
			// is only slow, whose answer may be the acknowledged write an
			// empty answer would hide (R+W>N).
			hedge = nil // closed: waits no more unless renewed
			if len(remotes) > 0 {
				ask(remotes[0])
				remotes = remotes[1:]
				hedge = c.readHedges.get().Done()
			}
		case <-ctx.Done(): // the server is shutting down
			return crdt.Object{}, &QuorumError{Op: "read", Got: len(got), Need: need, Replicas: n}
		}
	}
	return crdt.Object{}, &QuorumError{Op: "read", Got: len(got), Need: need, Replicas: n}
}

// preferQueued moves to the front of remotes (the copies a read asks in
// turn, for as many answers as it needs) the first preferred replica that
// calls are already waiting to be sent to (tr.Queued), unless the first one
// is such a replica, keeping the order of the others. Any R answers make
// a quorum, and the read's call then leaves with those calls instead of
// waking another node: a quorum read of R=2 on a replica needs one remote
// answer, and under load, asking whichever replica is being written to
// anyway halves the peer writes, each of which wakes a sleeping peer (on
// a VM, an interrupt on another CPU, the costliest part of a write).
// Which replica a quiet read asks is unchanged: the first in preference
// order. Stand-ins (hintFor set) keep their place.
func preferQueued(remotes []copySlot, tr queuedTransport) {
	if len(remotes) < 2 || remotes[0].hintFor != "" || tr.Queued(remotes[0].node) {
		return
	}
	for i := 1; i < len(remotes); i++ {
		if s := remotes[i]; s.hintFor == "" && tr.Queued(s.node) {
			copy(remotes[1:i+1], remotes[:i])
			remotes[0] = s
			return
		}
	}
}

// repair sends merged to a preferred replica, in the background, if its
// object is behind: known to be (the read's answer; check false), or found
// to be by asking it first (a replica the read did not need; check true,
// ReadRepairChance). Repairs past maxRepairs in flight are skipped, since
// anti-entropy catches what they would have fixed; Close waits for the
// others.
func (c *Coordinator) repair(part uint32, key []byte, to string, merged crdt.Object, check bool) {
	select {
	case c.repairs <- struct{}{}:
	default:
		c.stats.repairsSkipped.Add(1)
		return
	}
	if !check {
		c.stats.readRepairs.Add(1) // counted as it is decided, so a test can tell none was
	}
	c.stats.copiesInFlight.Add(1)
	// key is Get's own copy, so it may outlive the read.
	send := func() {
		defer func() { <-c.repairs }()
		defer c.stats.copiesInFlight.Add(-1)
		var err error
		if to == c.cfg.Self {
			_, err = c.cfg.Store.Merge(part, key, merged)
		} else {
			_, err = c.tr.Call(c.calls.get(), to, "merge", key, merged.Encode())
		}
		if err != nil {
			c.cfg.Logger.Debug("read repair failed", "replica", to, "err", err)
		}
	}
	if !check {
		go send()
		return
	}
	// The check is background work: it waits to leave with the next call
	// to the replica, instead of waking it on its own (a tenth of the
	// reads check, and each such call cost a cluster GET 6% of its CPU),
	// and it needs no goroutine unless the replica is behind.
	c.tr.GoLazy(c.calls.get(), to, "get", [][]byte{key}, func(res [][]byte, err error) {
		if o, err := decodeFetched(res, err); err != nil || o.Descends(merged) {
			c.stats.copiesInFlight.Add(-1)
			<-c.repairs
			return
		}
		c.stats.readRepairs.Add(1)
		go send() // the transport's goroutine must not call it
	})
}

// decodeFetched decodes a "get" call's outcome.
func decodeFetched(res [][]byte, err error) (crdt.Object, error) {
	if err != nil {
		return crdt.Object{}, err
	}
	if len(res) != 1 {
		return crdt.Object{}, errors.New("malformed get reply")
	}
	if len(res[0]) == 0 {
		return crdt.Object{}, nil
	}
	return crdt.Decode(res[0])
}

// Put implements wire.Backend.
func (c *Coordinator) Put(ctx context.Context, key, value []byte, opts wire.WriteOptions) error {
	_, err := c.write(ctx, key, "put", [][]byte{key, value, encodeOpts(opts)}, putFn(c.cfg.Store.Actor(), value, opts, c.cfg.Clock, c.cfg.Objects), true)
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
		// What the read found is what is deleted: the register's
		// siblings (its context) and the counter's increments, also those
		// the coordinator's own copy has not received yet.
		opts = wire.WriteOptions{Context: cur.Reg.Context, Counter: cur.Cnt, HasContext: true}
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

// A copySlot is one of the N copies of a key: on a preferred replica
// (hintFor empty), or on a stand-in holding it for hintFor.
type copySlot struct{ node, hintFor string }

// maxStackCopies is how many copies a request plans in a buffer on its
// stack (N is 3 in most clusters); more take an allocation.
const maxStackCopies = 5

// notACopy is the hintFor of a fallback a read asks beyond the copies,
// only when a copy's call has failed (not when it is slow): it answers
// with what it holds, and being no replica it is never repaired.
const notACopy = "?"

// spares yields the stand-ins for the copies of a request: the fallbacks
// after the key's preferred replicas in its partition's ranking (self
// first, if it is one: a coordinator that is not a replica keeps its own
// copy), the reachable ones, in order, each once; none when the request
// is strict. The ranking is computed on the first call of next, if any: a
// healthy request never needs it. A request keeps its spares on its
// stack: the closures they replaced were allocations a request.
type spares struct {
	place       *ring.Placement // the ranking, of partition part, after nreps replicas
	part        uint32
	nreps       int
	fallbacks   func() []string // the fallbacks instead of place's (tests)
	self        string
	c           *Coordinator      // whose reachable says which nodes may take a copy,
	exclude     []string          // except these (replicas a forward could not reach)
	reachableFn func(string) bool // instead of c's (tests)
	sloppy      bool

	loaded bool
	queue  []string
}

// reachable reports whether a copy may go to node m.
func (sp *spares) reachable(m string) bool {
	if sp.reachableFn != nil {
		return sp.reachableFn(m)
	}
	return !slices.Contains(sp.exclude, m) && sp.c.reachable(m)
}

// next returns the next reachable fallback, if any is left.
func (sp *spares) next() (string, bool) {
	if !sp.sloppy {
		return "", false
	}
	if !sp.loaded {
		sp.loaded = true
		var fbs []string
		switch {
		case sp.fallbacks != nil:
			fbs = sp.fallbacks()
		case sp.place != nil:
			fbs = sp.place.Ranking(sp.part)[sp.nreps:]
		}
		sp.queue = make([]string, 0, len(fbs))
		if sp.self != "" && slices.Contains(fbs, sp.self) {
			sp.queue = append(sp.queue, sp.self)
		}
		for _, f := range fbs {
			if f != sp.self {
				sp.queue = append(sp.queue, f)
			}
		}
	}
	for len(sp.queue) > 0 {
		f := sp.queue[0]
		sp.queue = sp.queue[1:]
		if sp.reachable(f) {
			return f, true
		}
	}
	return "", false
}

// planCopies decides where the N copies of a write go, and which copies
// a read asks: each preferred replica (reps) that is reachable
// (sp.reachable), and, when sloppy, for each one that is not, the next
// spare as its stand-in. sp then holds the spares left, for stand-ins of
// copies that fail later. It appends them to dst (a caller's stack
// buffer: a request's copies were an allocation). Pure, given pure
// arguments.
func planCopies(dst []copySlot, reps []string, sp *spares) []copySlot {
	copies := dst[:0]
	for _, r := range reps {
		if sp.reachable(r) {
			copies = append(copies, copySlot{node: r})
		} else if f, ok := sp.next(); ok {
			copies = append(copies, copySlot{node: f, hintFor: r})
		}
	}
	return copies
}

// write runs a write as coordinator if this node is a replica of key, or
// forwards it (method, args) to the first replica that takes it, and
// returns the forwarded call's results. When no preferred replica can be
// reached and the request is sloppy, this node coordinates it as a
// stand-in. A forwarded write (mayForward false) is never forwarded again,
// so a placement change cannot loop it.
func (c *Coordinator) write(ctx context.Context, key []byte, method string, args [][]byte, fn func(crdt.Object, bool) (crdt.Object, error), mayForward bool) ([][]byte, error) {
	// The copies still in flight when the quorum answers outlive this
	// call, and key may be the caller's buffer (wire.Backend's keys are
	// only valid during the call): they must not see it reused.
	key = bytes.Clone(key)
	rt, err := c.route(key)
	if err != nil {
		return nil, err
	}
	reps, n := rt.reps, len(rt.reps)
	w := c.cfg.W
	if q := wire.QuorumFrom(ctx).W; q > 0 {
		w = q
	}
	if w > n {
		return nil, &QuorumTooLargeError{Param: "W", Need: w, Replicas: n}
	}
	sloppy := c.sloppy(ctx)
	if slices.Contains(reps, c.cfg.Self) {
		// This node may still be forwarding earlier writes of the key (a
		// pipeline's SETs, sent before a placement change made it a
		// replica): they go first. A copy of this write reaching the
		// replica that coordinates one of them first would otherwise be
		// overwritten by it, the later write lost behind the earlier.
		c.forwards.settled(key)
		return c.coordinate(ctx, rt, key, w, sloppy, fn)
	}
	if !mayForward {
		return nil, errNotReplica
	}
	s := "0"
	if sloppy {
		s = "1"
	}
	fargs := append(args, []byte(strconv.Itoa(w)), []byte(s))
	// Forwards of a key leave this node one at a time, in the order they
	// came (a pipeline's SETs of one key must apply in order), and a read
	// of the key here waits for those in flight (read your writes).
	turn := c.forwards.enter(key)
	if g := wire.SyncGroupFrom(ctx); g != nil && method == "put" {
		// A SET with more of its pipeline buffered: forwarded in the
		// background, so that the pipeline's writes travel together;
		// its reply waits for it (wire.SyncGroup). Other writes answer
		// with the replica's result, so they are forwarded in line. The
		// forward outlives this call, so it takes copies of the
		// caller's buffers, and rebuilds the write from them for its
		// stand-in fallback, as a replica does from a forwarded call.
		for i, a := range fargs {
			fargs[i] = bytes.Clone(a)
		}
		opts, err := decodeOpts(fargs[2])
		if err != nil {
			turn.leave()
			return nil, err
		}
		fn = putFn(c.cfg.Store.Actor(), fargs[1], opts, c.cfg.Clock, c.cfg.Objects)
		bg := wire.WithSyncGroup(ctx, nil)
		done := make(chan error, 1)
		go func() {
			defer turn.leave()
			turn.wait()
			_, err := c.forwardOrStandIn(bg, rt, key, w, sloppy, method, fargs, fn)
			done <- err
		}()
		g.Defer(func() error { return <-done })
		return nil, nil
	}
	defer turn.leave()
	turn.wait()
	return c.forwardOrStandIn(ctx, rt, key, w, sloppy, method, fargs, fn)
}

// forwardOrStandIn forwards a write to the first replica that takes it,
// and coordinates it here as a stand-in if none could be reached and the
// request is sloppy.
func (c *Coordinator) forwardOrStandIn(ctx context.Context, rt route, key []byte, w int, sloppy bool, method string, fargs [][]byte, fn func(crdt.Object, bool) (crdt.Object, error)) ([][]byte, error) {
	res, err := c.forward(ctx, rt.reps, method, fargs)
	if !sloppy || !errors.Is(err, errNoReplicaReachable) {
		return res, err
	}
	c.cfg.Logger.Debug("no replica reachable; coordinating as a stand-in", "key", key)
	return c.coordinate(ctx, rt, key, w, sloppy, fn)
}

// coordinate runs a write as its coordinator: this node is a replica of
// key, or stands in for them.
func (c *Coordinator) coordinate(ctx context.Context, rt route, key []byte, w int, sloppy bool, fn func(crdt.Object, bool) (crdt.Object, error)) ([][]byte, error) {
	part, reps, n := rt.part, rt.reps, len(rt.reps)
	var exclude []string
	if !slices.Contains(reps, c.cfg.Self) { // forward found none of them
		exclude = reps
	}
	spare := rt.spares(c, c.cfg.Self, exclude, sloppy)
	var copyBuf [maxStackCopies]copySlot
	copies := planCopies(copyBuf[:0], reps, &spare)
	local := slices.IndexFunc(copies, func(s copySlot) bool { return s.node == c.cfg.Self })
	if local < 0 { // cannot happen: this node is a replica or a stand-in
		return nil, &QuorumError{Op: "write", Got: 0, Need: w, Replicas: n}
	}
	// Apply locally, and let the local fsync run while the other copies
	// are sent: the local copy counts once it is durable.
	localOK := true
	// The stored encoding is what the copies carry: it does not share the
	// caller's value bytes (only valid during this call), and the copies
	// may be sent after it returns.
	enc, localWait, err := c.cfg.Store.UpdateEncoded(part, key, copies[local].hintFor, fn)
	if errors.Is(err, store.ErrHintsFull) {
		// The write still counts on the other copies; this one is applied
		// (it carries this actor's history) but not hinted, so not counted.
		c.stats.hintsDropped.Add(1)
		localOK = false
		enc, localWait, err = c.cfg.Store.UpdateEncoded(part, key, "", fn)
	}
	if err != nil {
		return nil, err
	}
	if !localOK && localWait != nil {
		go localWait() // durable or not, it does not count
		localWait = nil
	}
	if localOK && len(copies) < len(reps) {
		// A preferred replica that no copy goes to (down, and no stand-in
		// left for it, as in a cluster of N nodes) gets a hint here. Each
		// copy covers one replica, so only fewer copies than replicas
		// leave one uncovered.
		for _, r := range reps {
			if !slices.ContainsFunc(copies, func(s copySlot) bool { return s.hintFor == r || s.node == r && s.hintFor == "" }) {
				c.hintLocally(part, key, r)
			}
		}
	}
	if g := wire.SyncGroupFrom(ctx); g != nil {
		// More commands of the client's pipeline wait: the local copy is
		// applied (the next command sees it), and the quorum is waited
		// for before any reply leaves. The copies of several writes of a
		// key may reach a replica in any order; they are causally
		// ordered objects, and merging is order-free.
		// The copies leave before the pipeline's next command runs (the
		// goroutine says when they are sent): a GET of the key next in
		// the pipeline then reaches each replica after this write's copy
		// on the same connection, instead of finding it stale and
		// repairing it (every pipelined SET then GET of a key did).
		done := make(chan error, 1)
		sent := make(chan struct{})
		sp := spare                // the goroutine's own: spare stays on this stack,
		cp := slices.Clone(copies) // and so do copies
		go func() {
			done <- c.replicate(ctx, part, key, enc, cp, local, localOK, localWait, &sp, rt.members, w, n, sent)
		}()
		<-sent
		g.Defer(func() error { return <-done })
		return nil, nil
	}
	return nil, c.replicate(ctx, part, key, enc, copies, local, localOK, localWait, &spare, rt.members, w, n, nil)
}

// hintLocally records a hint for target on this node's copy of key: target
// is a replica that a copy of a write did not reach, with no stand-in for
// it (none left, or the stand-in failed too). Handoff then merges this
// copy, which holds the write, into target's once target is back, as
// Cassandra's coordinators keep hints for the replicas they miss. Without
// it, a replica back from a failure in a cluster of exactly N nodes held
// none of the writes it missed until reads repaired them one key at a
// time. The hint is not fsynced, and it does not count toward W.
func (c *Coordinator) hintLocally(part uint32, key []byte, target string) {
	switch err := c.cfg.Store.AddHint(part, key, target); {
	case errors.Is(err, store.ErrHintsFull):
		c.stats.hintsDropped.Add(1)
	case err != nil:
		c.cfg.Logger.Debug("could not keep a hint for a replica", "replica", target, "err", err)
	}
}

var _ wire.Unavailable = (*QuorumError)(nil)

// QuorumTooLargeError is a request's R or W above the key's replicas:
// no state of the cluster could meet it, so it is the request's fault
// (wire.BadRequest: HTTP 400), not the cluster's.
type QuorumTooLargeError struct {
	Param          string // "R" or "W"
	Need, Replicas int
}

func (e *QuorumTooLargeError) Error() string {
	return fmt.Sprintf("%s=%d exceeds the %d replicas of the key", e.Param, e.Need, e.Replicas)
}

// BadRequest marks it as the request's fault (wire.BadRequest).
func (e *QuorumTooLargeError) BadRequest() bool { return true }

var _ wire.BadRequest = (*QuorumTooLargeError)(nil)

var (
	errNotReplica         = errors.New("node: this node is not a replica of the key (placement changed); retry")
	errNoReplicaReachable = errors.New("node: no replica of the key is reachable")
)

// replicate sends the encoded object enc to the copies other than the
// local one and waits until w copies hold it durably: the local one once
// localWait returns (nil: it already does; localOK false: it does not
// count) and the others as they acknowledge. A copy that fails gets a
// stand-in from spare (a hinted copy) while any are left. So does one not
// acknowledged within WriteHedge, but that stand-in counts only once the
// copy it stands for has failed (at the latest at the coordinator's
// timeout): a replica that is merely slow still holds every write that
// counted it, so that a read of R with R+W>N sees the write (as a read's
// fallback stands in only for a copy that failed). Calls that finish
// after the quorum still apply; all are bounded by the coordinator's
// timeout. sent, if not nil, is closed once the copies are sent.
func (c *Coordinator) replicate(ctx context.Context, part uint32, key, enc []byte, copies []copySlot, local int, localOK bool, localWait func() error, spare *spares, members, w, n int, sent chan<- struct{}) error {
	type result struct {
		slot int
		s    copySlot
		err  error
	}
	// The calls may outlive the write (stragglers, after the quorum): their
	// results go to a channel with room for every one, and they end by
	// the coordinator's timeout.
	callCtx := c.calls.get()
	results := make(chan result, len(copies)+members) // every copy, every stand-in
	var ackedBuf, failedBuf, heldBuf [maxStackCopies]bool
	var inFlightBuf [maxStackCopies]int
	acked, inFlight := ackedBuf[:], inFlightBuf[:] // attempts out per slot
	// failed: the slot's own copy failed. held: a stand-in acknowledged
	// the slot's copy while its own was still out (it counts if that fails).
	failed, held := failedBuf[:], heldBuf[:]
	if len(copies) > maxStackCopies {
		acked, inFlight = make([]bool, len(copies)), make([]int, len(copies))
		failed, held = make([]bool, len(copies)), make([]bool, len(copies))
	}
	acked, inFlight = acked[:len(copies)], inFlight[:len(copies)]
	failed, held = failed[:len(copies)], held[:len(copies)]
	mergeArgs := [][]byte{key, enc} // shared by the preferred copies' calls: read only
	acks, pending := 0, 0
	send := func(slot int, s copySlot) {
		inFlight[slot]++
		pending++
		c.stats.copiesInFlight.Add(1)
		done := func(_ [][]byte, err error) { // on the transport's goroutine, or this one
			if err != nil {
				c.cfg.Logger.Debug("replica write failed", "replica", s.node, "hint_for", s.hintFor, "err", err)
				if localOK { // this node's copy holds the write: it hints for the copy that failed
					target := s.hintFor
					if target == "" {
						target = s.node
					}
					c.hintLocally(part, key, target)
				}
			}
			c.stats.copiesInFlight.Add(-1)  // after the hint, before the write may return
			results <- result{slot, s, err} // room for every result: never blocks
		}
		if s.hintFor == "" {
			c.tr.Go(callCtx, s.node, "merge", mergeArgs, done)
		} else {
			c.tr.Go(callCtx, s.node, "hint", [][]byte{key, enc, []byte(s.hintFor)}, done)
		}
	}
	// standIn sends slot's copy to the next spare node, as a hint for the
	// preferred replica the slot stands for.
	spareLeft := true
	standIn := func(slot int) {
		f, ok := spare.next()
		if spareLeft = ok; !ok {
			return
		}
		target := copies[slot].hintFor
		if target == "" {
			target = copies[slot].node
		}
		send(slot, copySlot{node: f, hintFor: target})
	}
	switch {
	case localWait != nil:
		inFlight[local]++
		pending++
		ls := copies[local] // not copies itself: it stays on the caller's stack
		go func() { results <- result{local, ls, localWait()} }()
	case localOK:
		acked[local], acks = true, 1
		if copies[local].hintFor != "" {
			c.stats.hintedWrites.Add(1)
		}
	}
	for i, s := range copies {
		if i != local {
			send(i, s)
		}
	}
	if !localOK {
		failed[local] = true
		standIn(local)
	}
	if sent != nil {
		close(sent) // the copies are on their way (queued on their connections)
	}
	hedge := c.writeHedges.get().Done() // closes WriteHedge from now, give or take a tenth
	for acks < w && pending > 0 {
		select {
		case r := <-results:
			pending--
			inFlight[r.slot]--
			own := r.s.node == copies[r.slot].node
			switch {
			case r.err == nil && !acked[r.slot] && !own && !failed[r.slot]:
				held[r.slot] = true // the slot's own copy is only slow so far
			case r.err == nil && !acked[r.slot]:
				acked[r.slot] = true
				acks++
				if r.s.hintFor != "" {
					c.stats.hintedWrites.Add(1)
				}
			case r.err != nil && own && held[r.slot] && !acked[r.slot]:
				failed[r.slot] = true
				acked[r.slot] = true // its stand-in already holds the copy
				acks++
				c.stats.hintedWrites.Add(1)
			case r.err != nil && !acked[r.slot]:
				failed[r.slot] = failed[r.slot] || own
				if inFlight[r.slot] == 0 {
					standIn(r.slot)
				}
			}
		case <-hedge:
			// Every other copy still unacknowledged gets one more stand-in,
			// and again after each WriteHedge while spares last: a
			// black-holed stand-in costs the write one more hedge delay, not
			// the timeout. The local copy is only waiting for its fsync,
			// which a stand-in would wait for too.
			for i := range copies {
				// A held slot has a stand-in holding its copy already:
				// another would only use up a spare a failed slot needs.
				if !acked[i] && !held[i] && i != local {
					standIn(i)
				}
			}
			hedge = nil // closed: waits no more unless renewed
			if spareLeft {
				hedge = c.writeHedges.get().Done()
			}
		case <-ctx.Done():
			return &QuorumError{Op: "write", Got: acks, Need: w, Replicas: n}
		}
	}
	if acks >= w {
		return nil
	}
	return &QuorumError{Op: "write", Got: acks, Need: w, Replicas: n}
}

// forward hands a write to the first reachable replica that takes it. A
// replica that is unreachable at once is skipped; one that times out is
// not retried elsewhere, since it may have applied the write. If no
// replica was reachable the error wraps errNoReplicaReachable.
func (c *Coordinator) forward(ctx context.Context, reps []string, method string, args [][]byte) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Timeout) // its own quorum wait, plus the hop
	defer cancel()
	last := errors.New("gossip reports them failed or their breakers are open")
	for _, r := range reps {
		if !c.reachable(r) {
			continue
		}
		res, err := c.tr.Call(ctx, r, method, args...)
		if err == nil {
			return res, nil
		}
		var pe *wire.PeerError
		if errors.As(err, &pe) {
			return nil, peerError(pe)
		}
		last = err
		// Only a call that never left may go to the next replica: one
		// that failed in flight may have been applied, and applying a
		// write twice counts an INCR twice.
		if !errors.Is(err, wire.ErrNotSent) {
			return nil, fmt.Errorf("node: forwarding the write to %s (it may have been applied): %w", r, err)
		}
	}
	return nil, fmt.Errorf("%w: %w", errNoReplicaReachable, last)
}

// peerError turns a forwarded coordinator's error back into the sentinel
// it was, so the client sees the same reply as from a local coordinator.
func peerError(pe *wire.PeerError) error {
	for _, e := range []error{wire.ErrWrongType, crdt.ErrOverflow} {
		if pe.Msg == e.Error() {
			return e
		}
	}
	if strings.HasPrefix(pe.Msg, objectTooLargePrefix) {
		return fmt.Errorf("%w: %s", wire.ErrObjectTooLarge, strings.TrimPrefix(pe.Msg, objectTooLargePrefix))
	}
	return errors.New(pe.Msg)
}

// encodeOpts and decodeOpts carry WriteOptions over a peer call.
func encodeOpts(o wire.WriteOptions) []byte {
	if !o.HasContext {
		return []byte("-")
	}
	return []byte(crdt.ReadToken(o.Context, o.Counter))
}

func decodeOpts(b []byte) (wire.WriteOptions, error) {
	if string(b) == "-" {
		return wire.WriteOptions{}, nil
	}
	ctx, cnt, err := crdt.ParseReadToken(string(b))
	return wire.WriteOptions{Context: ctx, Counter: cnt, HasContext: true}, err
}

// mergeFn merges o into the stored object.
func mergeFn(o crdt.Object) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) { return crdt.Merge(cur, o), nil }
}

// inlinePeerMethods are the peer methods that only touch this node's
// store: the peer server runs them on the connection's reader
// (wire.PeerServer.Inline).
var inlinePeerMethods = []string{"ping", "get", "merge", "hint"}

// peerArgs is how many arguments each peer method takes. Forwarded writes
// (put, del, incr) carry W and sloppiness ("1" or "0") last; del carries
// the key and the context token of what its coordinator's read found.
var peerArgs = map[string]int{"ping": 0, "get": 1, "merge": 2, "hint": 3, "put": 5, "del": 4, "incr": 4}

// HandlePeer serves the peer methods (wire.PeerHandler): "ping"; "get",
// "merge" and "hint" (merge and keep a hint for the named node), a copy's
// part; "put", "del" and "incr", a forwarded write's coordinator.
func (c *Coordinator) HandlePeer(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
	need, ok := peerArgs[method]
	if !ok {
		return nil, fmt.Errorf("unknown peer method %q", method)
	}
	if len(args) != need {
		return nil, fmt.Errorf("peer method %s takes %d arguments, not %d", method, need, len(args))
	}
	if method == "ping" {
		return nil, nil
	}
	key := args[0]
	if method == "put" || method == "del" || method == "incr" {
		w, err := strconv.Atoi(string(args[len(args)-2]))
		if err != nil || w < 1 {
			return nil, fmt.Errorf("bad W %q", args[len(args)-2])
		}
		q := wire.Quorum{W: w, Sloppy: wire.SloppyNo}
		switch string(args[len(args)-1]) {
		case "1":
			q.Sloppy = wire.SloppyYes
		case "0":
		default:
			return nil, fmt.Errorf("bad sloppiness %q", args[len(args)-1])
		}
		ctx = wire.WithQuorum(ctx, q)
	}
	switch method {
	case "get":
		p := c.place.Load()
		if p == nil {
			return nil, errors.New("node: no cluster members yet")
		}
		enc, found, err := c.cfg.Store.GetEncoded(ring.Partition(key, p.Partitions()), key)
		if err != nil || !found {
			return [][]byte{nil}, err
		}
		// The stored bytes, shared with the store's cache, which replaces
		// an entry and never writes into it: the reply may be encoded
		// from them after this call (an inline call's, with its batch).
		return [][]byte{enc}, nil
	case "merge":
		o, err := crdt.Decode(args[1])
		if err != nil {
			return nil, err
		}
		// Run inline by the peer server: the fsync wait goes to its group,
		// and the reply leaves once the wait returns.
		_, err = c.cfg.Store.UpdateDeferred(ring.Partition(key, c.cfg.Store.Partitions()), key, mergeFn(o), deferSync(ctx))
		return nil, err
	case "hint":
		o, err := crdt.Decode(args[1])
		if err != nil {
			return nil, err
		}
		target := string(args[2])
		if target == c.cfg.Self {
			target = "" // placements disagree: it is ours after all
		}
		_, err = c.cfg.Store.UpdateHinted(ring.Partition(key, c.cfg.Store.Partitions()), key, target, mergeFn(o), deferSync(ctx))
		if errors.Is(err, store.ErrHintsFull) {
			c.stats.hintsDropped.Add(1)
		}
		return nil, err
	case "put":
		opts, err := decodeOpts(args[2])
		if err != nil {
			return nil, err
		}
		_, err = c.write(ctx, key, method, nil, putFn(c.cfg.Store.Actor(), args[1], opts, c.cfg.Clock, c.cfg.Objects), false)
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
