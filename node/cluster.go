package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rumor-kv/rumor/gossip"
	"github.com/rumor-kv/rumor/wire"
	"golang.org/x/net/netutil"
)

// ClusterConfig makes a node a member of a cluster: it gossips on
// GossipAddr, serves peer calls on PeerAddr, and serves clients through a
// Coordinator (quorum reads and writes) instead of its store alone.
type ClusterConfig struct {
	// GossipAddr is the serf/memberlist address. Required.
	GossipAddr string
	// PeerAddr is the peer RPC address. Default: the client address's
	// host with a port the OS picks (advertised to the others by gossip).
	PeerAddr string
	// Join lists gossip addresses of running members to join through.
	Join []string
	// Replicas (N), R and W; defaults 3, 2 and 2.
	Replicas, R, W int
	// Timeout bounds a request's peer calls. Default 1s.
	Timeout time.Duration
	// Strict turns sloppy quorum off by default (CoordinatorConfig.Strict).
	Strict bool
	// ReadRepairChance is CoordinatorConfig.ReadRepairChance (default
	// 0.1, negative never).
	ReadRepairChance float64
	// Timing is gossip's failure detector profile (default LocalTiming).
	Timing gossip.Timing
	// ReconnectTimeout is gossip.Config.ReconnectTimeout: if set, how
	// long a failed member is kept before it is reaped, gone for good.
	// Zero, the default: never (until removed).
	ReconnectTimeout time.Duration
	// serfReconnectTimeout is gossip.Config.SerfReconnectTimeout (tests
	// shorten it).
	serfReconnectTimeout time.Duration
	// Key, if set (wire.ClusterKey of the operator's secret), encrypts
	// gossip and is required of every peer connection: only nodes that
	// hold it can join, or make calls to this one. 32 bytes.
	Key []byte
}

// peerTransport reaches members by name through their advertised peer
// addresses, one pipelined PeerClient each, through faults if set.
type peerTransport struct {
	mu      sync.Mutex
	addrs   map[string]string
	clients map[string]*wire.PeerClient

	key       []byte        // the cluster key the clients prove they hold; nil: none
	faults    *Faults       // nil: none
	closed    chan struct{} // ends calls held by a fault
	closeOnce sync.Once
	calls     *prometheus.HistogramVec // the calls' latency, by peer and method
}

func newPeerTransport(faults *Faults, key []byte) *peerTransport {
	return &peerTransport{addrs: map[string]string{}, clients: map[string]*wire.PeerClient{}, key: key, faults: faults, closed: make(chan struct{}),
		calls: peerLatency("rumor_peer_call_duration_seconds",
			"This node's calls to other nodes, from sending to the outcome (a reply, the peer's error, a broken connection or the deadline), by peer and method.", "peer")}
}

// peerLatency is a histogram of peer calls' durations, by labels and then
// by method.
func peerLatency(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help,
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 17), // 25µs .. 1.6s
	}, append(labels, "method"))
}

// observeByMethod returns a wire Observe hook that records each call's
// duration in vec under labels and the call's method: the histograms of
// the peer methods (peerArgs) are looked up once, not per call, and any
// other name counts as "other".
func observeByMethod(vec *prometheus.HistogramVec, labels ...string) func(method string, took time.Duration, err error) {
	byMethod := make(map[string]prometheus.Observer, len(peerArgs))
	for m := range peerArgs {
		byMethod[m] = vec.WithLabelValues(slices.Concat(labels, []string{m})...)
	}
	other := vec.WithLabelValues(slices.Concat(labels, []string{"other"})...)
	return func(method string, took time.Duration, _ error) {
		o, ok := byMethod[method]
		if !ok {
			o = other
		}
		o.Observe(took.Seconds())
	}
}

func (t *peerTransport) update(members []gossip.Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range members {
		if m.Status == gossip.StatusLeft || m.Status == gossip.StatusReaped {
			// Gone for good: nothing calls it any more. Its connection,
			// address and latency series go (a node replaced again and
			// again under new names kept one set per name); a member
			// back under the same name gets them anew.
			if c := t.clients[m.Name]; c != nil {
				c.Close()
				delete(t.clients, m.Name)
			}
			delete(t.addrs, m.Name)
			t.calls.DeletePartialMatch(prometheus.Labels{"peer": strings.ToValidUTF8(m.Name, "\uFFFD")})
			continue
		}
		if old, ok := t.addrs[m.Name]; ok && old != m.Tags.PeerAddr {
			if c := t.clients[m.Name]; c != nil {
				c.Close()
				delete(t.clients, m.Name)
			}
		}
		t.addrs[m.Name] = m.Tags.PeerAddr
	}
}

func (t *peerTransport) client(to string) (*wire.PeerClient, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.clients[to]; c != nil {
		return c, nil
	}
	addr, ok := t.addrs[to]
	if !ok || addr == "" {
		return nil, fmt.Errorf("%w: %w: %s has no known peer address", wire.ErrPeerUnavailable, wire.ErrNotSent, to)
	}
	// A label value must be UTF-8; a member's name need not be.
	c := wire.NewPeerClient(addr, wire.PeerClientConfig{Key: t.key, Observe: observeByMethod(t.calls, strings.ToValidUTF8(to, "\uFFFD"))})
	t.clients[to] = c
	return c, nil
}

func (t *peerTransport) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	if t.faults != nil {
		if err := t.faults.beforeCall(ctx, t.closed, to, method); err != nil {
			return nil, err
		}
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	return c.Call(ctx, method, args...)
}

var _ asyncTransport = (*peerTransport)(nil)

// Go implements asyncTransport: through the peer's client when no fault
// holds calls to it, in a goroutine that waits out the fault otherwise.
func (t *peerTransport) Go(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error)) {
	t.goCall(ctx, to, method, args, done, false)
}

var _ lazyTransport = (*peerTransport)(nil)

// GoLazy implements lazyTransport (wire.PeerClient.GoLazy); through a
// fault, it is Go.
func (t *peerTransport) GoLazy(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error)) {
	t.goCall(ctx, to, method, args, done, true)
}

func (t *peerTransport) goCall(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error), lazy bool) {
	if t.faults != nil && (t.faults.Blocked(to) || t.faults.Delay(to) > 0) {
		go func() { done(t.Call(ctx, to, method, args...)) }()
		return
	}
	c, err := t.client(to)
	if err != nil {
		done(nil, err)
		return
	}
	if lazy {
		c.GoLazy(ctx, method, args, done)
	} else {
		c.Go(ctx, method, args, done)
	}
}

var _ queuedTransport = (*peerTransport)(nil)

// Queued implements queuedTransport: whether calls to to wait in its
// client's write buffer. False with no client yet.
func (t *peerTransport) Queued(to string) bool {
	t.mu.Lock()
	c := t.clients[to]
	t.mu.Unlock()
	return c != nil && c.Queued()
}

func (t *peerTransport) close() {
	t.closeOnce.Do(func() { close(t.closed) })
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		c.Close()
	}
}

// clusterState is what a clustered node keeps beside its Node.
type clusterState struct {
	cfg    ClusterConfig
	coord  *Coordinator
	tr     *peerTransport
	peers  *wire.PeerServer
	gossip *gossip.Gossip

	mu      sync.Mutex
	members []gossip.Member
	addrs   map[string]string // gossip address -> member name
}

// startCluster joins n to its cluster: peer server, coordinator, gossip.
// The caller has opened n's listeners (their addresses go into the tags).
// testHookStartCluster, if set (by tests), runs as it begins.
func (n *Node) startCluster(cc ClusterConfig) (err error) {
	if testHookStartCluster != nil {
		testHookStartCluster(n)
	}
	if cc.GossipAddr == "" {
		return errors.New("node: cluster needs a gossip address")
	}
	var faults *Faults
	if n.cfg.AllowFaults {
		faults = &n.faults
	}
	cs := &clusterState{cfg: cc, tr: newPeerTransport(faults, cc.Key)}
	coord, err := NewCoordinator(CoordinatorConfig{
		Self: n.cfg.Name, Store: n.st, Transport: cs.tr,
		Replicas: cc.Replicas, R: cc.R, W: cc.W, Timeout: cc.Timeout, Strict: cc.Strict,
		ReadRepairChance: cc.ReadRepairChance, Objects: n.cfg.Objects,
		Clock: n.cfg.Clock, Logger: n.cfg.Logger,
	})
	if err != nil {
		return err
	}
	cs.coord = coord
	defer func() {
		if err != nil && n.cluster == nil { // n.Close closes it otherwise
			coord.Close()
		}
	}()
	if err := coord.SetMembers([]string{n.cfg.Name}); err != nil {
		return err
	}
	if err := n.registry.Register(coordCollector{coord}); err != nil {
		return err
	}
	if err := n.registry.Register(faultsCollector{n}); err != nil {
		return err
	}
	if err := n.registry.Register(cs.tr.calls); err != nil {
		return err
	}
	peerAddr := cc.PeerAddr
	if peerAddr == "" {
		// The client address's host, or the gossip address's if that one
		// listens on every interface: the others dial what this node
		// advertises, and "::" or "0.0.0.0" is nowhere on another host.
		host, _, _ := net.SplitHostPort(n.ClientAddr())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host, _, _ = net.SplitHostPort(cc.GossipAddr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("node: --client-addr and --gossip-addr listen on every interface: set --peer-addr to an address the other nodes can reach")
		}
		peerAddr = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", peerAddr)
	if err != nil {
		return fmt.Errorf("node: peer address: %w", err)
	}
	cs.peers = wire.NewPeerServer(coord.HandlePeer, peerLimits(n.cfg.Server.Limits, n.cfg.Objects.MaxSize), n.cfg.Logger)
	cs.peers.Inline(inlinePeerMethods...)
	if cc.Key != nil {
		cs.peers.RequireKey(cc.Key)
	}
	served := peerLatency("rumor_peer_serve_duration_seconds",
		"Calls from other nodes that this node served, from reading one to writing its reply (with --sync, a copy's fsync included), by method.")
	if err := n.registry.Register(served); err != nil {
		return err
	}
	cs.peers.Observe(observeByMethod(served))
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// At most maxPeerConns at once, within the open-file budget
		// (fileBudget): connections that have not authenticated yet are
		// held up to 5 s each, and without a bound a flood of them took
		// the files pebble needed.
		if err := cs.peers.Serve(netutil.LimitListener(ln, maxPeerConns)); !errors.Is(err, wire.ErrServerClosed) {
			n.setServeErr(fmt.Errorf("node: peer protocol: %w", err))
		}
	}()
	n.cluster = cs
	gc := gossip.Config{
		Name: n.cfg.Name, BindAddr: cc.GossipAddr, Timing: cc.Timing, ReconnectTimeout: cc.ReconnectTimeout, SerfReconnectTimeout: cc.serfReconnectTimeout,
		SnapshotPath: filepath.Join(n.cfg.DataDir, "serf.snapshot"),
		MembersPath:  filepath.Join(n.cfg.DataDir, "members.json"),
		Tags: gossip.Tags{Actor: n.st.Actor(), ClientAddr: n.ClientAddr(), HTTPAddr: n.HTTPAddr(),
			PeerAddr: ln.Addr().String(), Partitions: n.cfg.Partitions},
		OnChange:  cs.onChange(n),
		SecretKey: cc.Key,
		Logger:    n.cfg.Logger,
	}
	if faults != nil {
		gc.Filter = cs.gossipFilter(faults)
	}
	// A node restarted on its data directory knows its cluster from the
	// snapshot, and serf rejoins whichever of those members is up: the
	// --join addresses, needed to find the cluster the first time, may
	// then be down (a seed restarted, a node stopped).
	restart := false
	if fi, err := os.Stat(gc.SnapshotPath); err == nil && fi.Size() > 0 {
		restart = true
	}
	g, err := gossip.New(gc)
	if err != nil {
		cs.peers.Close()
		return err
	}
	cs.gossip = g
	if len(cc.Join) > 0 {
		if _, err := g.Join(cc.Join); err != nil {
			if !restart {
				g.Shutdown()
				cs.peers.Close()
				return err
			}
			n.cfg.Logger.Warn("could not reach the --join addresses; rejoining the members this node knew before its restart", "err", err)
		}
	}
	// Serve with the members the join brought, not just this node: the
	// events about them may not have been delivered yet.
	g.Notify()
	return nil
}

var testHookStartCluster func(*Node)

// onChange keeps the transport and the placement in step with gossip.
// A failed member stays in the ring; only a member that left is removed.
func (cs *clusterState) onChange(n *Node) func([]gossip.Member) {
	return func(ms []gossip.Member) {
		cs.tr.update(ms)
		names, failed, left := classifyMembers(ms)
		cs.coord.SetDown(failed)
		if err := cs.coord.SetMembers(names); err != nil {
			n.cfg.Logger.Error("placement", "err", err)
		}
		cs.coord.SetLeft(left)
		addrs := make(map[string]string, len(ms))
		for _, m := range ms {
			addrs[m.Addr] = m.Name
		}
		cs.mu.Lock()
		cs.members, cs.addrs = ms, addrs
		cs.mu.Unlock()
	}
}

// classifyMembers sorts gossip's members into the ring's members (every
// one but those leaving or gone), the failed ones (still members: they
// come back), and those gone for good (left, or reaped after failing for
// the reconnect timeout), whose hints go to the replicas now.
func classifyMembers(ms []gossip.Member) (names, failed, gone []string) {
	names = make([]string, 0, len(ms))
	for _, m := range ms {
		switch m.Status {
		case gossip.StatusLeft, gossip.StatusReaped:
			gone = append(gone, m.Name)
		case gossip.StatusLeaving:
		case gossip.StatusFailed:
			failed = append(failed, m.Name)
			names = append(names, m.Name)
		default:
			names = append(names, m.Name)
		}
	}
	return names, failed, gone
}

func (cs *clusterState) close() {
	if cs.gossip != nil {
		cs.gossip.Shutdown()
	}
	cs.peers.Close()
	cs.coord.Close()
	cs.tr.close()
}

// ClusterMember is one member as GET /cluster and INFO show it.
type ClusterMember struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	ClientAddr string `json:"client_addr"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr"`
	PeerAddr   string `json:"peer_addr"`
	Replicas   int    `json:"replicas"` // partition replicas it holds
}

// ClusterView is this node's view of the cluster.
type ClusterView struct {
	Self       string          `json:"self"`
	Partitions int             `json:"partitions"`
	N          int             `json:"n"`
	R          int             `json:"r"`
	W          int             `json:"w"`
	Sloppy     bool            `json:"sloppy"`
	Members    []ClusterMember `json:"members"`
	// Requests is the coordinator's view of its peers (reachability,
	// breakers, hints pending for each) and its repair and hint counters.
	Requests CoordinatorStats `json:"requests"`
	// Faults are the faults injected on this node (see Faults).
	Faults FaultsView `json:"faults"`
}

// Cluster returns this node's view of the cluster, or nil if it runs alone.
func (n *Node) Cluster() *ClusterView {
	cs := n.cluster
	if cs == nil {
		return nil
	}
	cs.mu.Lock()
	ms := cs.members
	cs.mu.Unlock()
	p := cs.coord.place.Load()
	v := &ClusterView{Self: n.cfg.Name, Partitions: n.cfg.Partitions, N: cs.coord.cfg.Replicas, R: cs.coord.cfg.R, W: cs.coord.cfg.W,
		Sloppy: !cs.coord.cfg.Strict, Requests: cs.coord.Stats(),
		Faults: FaultsView{Enabled: n.cfg.AllowFaults, State: n.faults.State()}}
	for _, m := range ms {
		cm := ClusterMember{Name: m.Name, Status: m.Status.String(), ClientAddr: m.Tags.ClientAddr,
			HTTPAddr: m.Tags.HTTPAddr, GossipAddr: m.Addr, PeerAddr: m.Tags.PeerAddr}
		if p != nil {
			cm.Replicas = p.Load(m.Name)
		}
		v.Members = append(v.Members, cm)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	return v
}

func (n *Node) clusterInfo() wire.InfoSection {
	sec := wire.InfoSection{Name: "Cluster"}
	v := n.Cluster()
	if v == nil {
		sec.Fields = [][2]string{{"cluster_enabled", "0"}}
		return sec
	}
	alive, mine, total := 0, 0, 0
	for _, m := range v.Members {
		if m.Status == "alive" {
			alive++
		}
		if m.Name == v.Self {
			mine = m.Replicas
		}
		total += m.Replicas // every replica the placement has (a member that left has none)
	}
	share := 0.0
	if total > 0 {
		share = float64(mine) / float64(total)
	}
	sec.Fields = [][2]string{
		{"cluster_enabled", "1"},
		{"members", strconv.Itoa(len(v.Members))},
		{"members_alive", strconv.Itoa(alive)},
		{"replicas_n", strconv.Itoa(v.N)}, {"quorum_r", strconv.Itoa(v.R)}, {"quorum_w", strconv.Itoa(v.W)},
		{"partition_replicas_here", strconv.Itoa(mine)},
		{"partition_share", strconv.FormatFloat(share, 'f', 4, 64)},
		{"cluster_key", map[bool]string{true: "set", false: "none"}[n.cfg.Cluster.Key != nil]},
	}
	for _, m := range v.Members {
		sec.Fields = append(sec.Fields, [2]string{"member_" + m.Name,
			fmt.Sprintf("status=%s,client=%s,http=%s,gossip=%s,peer=%s,replicas=%d", m.Status, m.ClientAddr, m.HTTPAddr, m.GossipAddr, m.PeerAddr, m.Replicas)})
	}
	st := v.Requests
	pending := 0
	for _, c := range st.HintsPending {
		pending += c
	}
	u := func(x uint64) string { return strconv.FormatUint(x, 10) }
	sec.Fields = append(sec.Fields,
		[2]string{"sloppy_quorum", map[bool]string{true: "1", false: "0"}[v.Sloppy]},
		[2]string{"read_repair_chance", strconv.FormatFloat(max(n.cluster.coord.cfg.ReadRepairChance, 0), 'g', -1, 64)},
		[2]string{"hints_pending", strconv.Itoa(pending)},
		[2]string{"copies_in_flight", strconv.FormatInt(st.CopiesInFlight, 10)},
		[2]string{"hinted_writes", u(st.HintedWrites)},
		[2]string{"hints_delivered", u(st.HintsDelivered)},
		[2]string{"hints_dropped", u(st.HintsDropped)},
		[2]string{"hint_delivery_failures", u(st.HintDeliveryFailures)},
		[2]string{"read_repairs", u(st.ReadRepairs)},
		[2]string{"read_repairs_skipped", u(st.ReadRepairsSkipped)},
	)
	for _, p := range st.Peers {
		sec.Fields = append(sec.Fields, [2]string{"peer_" + p.Name,
			fmt.Sprintf("reachable=%d,gossip_failed=%d,breaker=%s,breaker_opened=%d,hints_pending=%d",
				b2i(p.Reachable), b2i(p.GossipDown), p.Breaker, p.BreakerOpened, p.HintsPending)})
	}
	return sec
}

// clusterCommand serves CLUSTER LEAVE (this node leaves for good and the
// process is told to exit through Left) and CLUSTER FORGET name (remove a
// failed member for good).
func (n *Node) clusterCommand(args []string) (string, error) {
	cs := n.cluster
	if cs == nil {
		return "", errors.New("this node runs alone, not in a cluster")
	}
	switch {
	case len(args) == 1 && strings.EqualFold(args[0], "LEAVE"):
		if err := cs.gossip.Leave(); err != nil {
			return "", err
		}
		n.leftOnce.Do(func() { close(n.left) })
		return "OK", nil
	case len(args) == 2 && strings.EqualFold(args[0], "FORGET"):
		if err := cs.gossip.Forget(args[1]); err != nil {
			return "", err
		}
		return "OK", nil
	}
	return "", errors.New("CLUSTER LEAVE | CLUSTER FORGET name")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// peerLimits are the peer server's limits: the clients' (argument counts,
// inline lines), except that one argument, an object's copy, may be as
// large as a whole request, and at least four objects of the largest size
// a write may make. Merges are never refused, so concurrent writes can
// take an object past that size: a copy the peer refused would fail, and
// its hint stay, for ever.
func peerLimits(l wire.Limits, maxObject int) wire.Limits {
	l = l.WithDefaults()
	if maxObject <= 0 { // no bound on objects: copies of up to a GiB
		l.MaxRequest = max(l.MaxRequest, 1<<30)
	}
	l.MaxRequest = max(l.MaxRequest, 4*maxObject)
	l.MaxBulk = l.MaxRequest
	return l.WithDefaults() // capped where lengths cannot overflow
}
