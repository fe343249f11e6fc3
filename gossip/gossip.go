// Package gossip is rumor's membership: the only package that imports
// hashicorp/serf and memberlist. Nodes join through any member, learn each
// other's metadata from serf tags, and see failures by SWIM probing.
//
// Start a node's membership with New, join a running cluster with Join,
// and read the members with Members (sorted by name) or be told of every
// change through Config.OnChange:
//
//	g, err := gossip.New(gossip.Config{Name: "n1", BindAddr: "127.0.0.1:7946", Tags: tags, OnChange: update})
//	_, err = g.Join([]string{"127.0.0.1:7947"})
//	defer g.Shutdown()
//
// Membership follows Dynamo's rule that a stopped process is a transient
// failure, not a departure: Shutdown does not leave, so the others see the
// node as failed and keep it, retried, for good (serf forgets a failed
// member after a day; this node then keeps and retries it itself), and a
// node restarted with the same SnapshotPath rejoins the members it knew
// without anyone's help. Only Leave and Forget, an explicit removal, take
// a node out for good, or Config.ReconnectTimeout if set (reaping: only a
// node that sees most of the ring alive does, see seesMajority).
//
// A failed member stays a ring member everywhere, also on a node that
// joins or restarts while it is down: memberlist forgets a dead member
// after GossipToTheDead, and serf then tells newcomers nothing of it, so
// each node asks the others (a serf query, when members join and every
// four push-pull intervals) which members they know as failed or gone for
// good, and lists those serf does not know here: failed ones as failed
// (reaped when the first node to see them fail reaps them), gone ones as
// left or reaped. Otherwise a node that restarted while another was down
// would place keys on other replicas than the rest of the cluster.
//
// A Config.Filter puts a fault filter between the node and the network
// (see Filter): tests and `rumor cluster partition` use it to black-hole
// or delay gossip with chosen members, as a real partition would.
//
// Every member carries its Tags; a node whose partition count differs
// from this one's is refused when it tries to join, with an error that
// says so (a cluster's Q is fixed when it is created).
package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// ProtocolVersion is rumor's peer protocol version, carried in tags.
const ProtocolVersion = 1

// Tags are a node's metadata, gossiped as serf tags.
type Tags struct {
	Actor      uint64 // the node's actor id
	ClientAddr string // RESP address
	HTTPAddr   string // HTTP address
	PeerAddr   string // peer RPC address
	Partitions int    // Q
	Proto      int    // ProtocolVersion
}

func (t Tags) encode() map[string]string {
	return map[string]string{
		"actor":  strconv.FormatUint(t.Actor, 16),
		"client": t.ClientAddr,
		"http":   t.HTTPAddr,
		"peer":   t.PeerAddr,
		"q":      strconv.Itoa(t.Partitions),
		"proto":  strconv.Itoa(t.Proto),
	}
}

func decodeTags(m map[string]string) (Tags, error) {
	t := Tags{ClientAddr: m["client"], HTTPAddr: m["http"], PeerAddr: m["peer"]}
	var errs []error
	var err error
	if t.Actor, err = strconv.ParseUint(m["actor"], 16, 64); err != nil {
		errs = append(errs, fmt.Errorf("actor tag %q", m["actor"]))
	}
	if t.Partitions, err = strconv.Atoi(m["q"]); err != nil {
		errs = append(errs, fmt.Errorf("q tag %q", m["q"]))
	}
	if t.Proto, err = strconv.Atoi(m["proto"]); err != nil {
		errs = append(errs, fmt.Errorf("proto tag %q", m["proto"]))
	}
	if len(errs) > 0 {
		return t, fmt.Errorf("gossip: bad tags: %w", errors.Join(errs...))
	}
	return t, nil
}

// Status is a member's state as gossip sees it.
type Status int

// Member states.
const (
	StatusAlive Status = iota
	StatusSuspect
	StatusFailed
	StatusLeaving
	StatusLeft
	// StatusReaped is a member failed for Config.ReconnectTimeout, if
	// set, and reaped (it is retried no more). Like a member that
	// left, it is gone for good: it holds no partitions, and what was
	// kept for it belongs to the others. It stays listed, as reaped, until
	// a member of that name joins again.
	StatusReaped
)

func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusSuspect:
		return "suspect"
	case StatusFailed:
		return "failed"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusReaped:
		return "reaped"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Member is a node as this node knows it.
type Member struct {
	Name   string
	Addr   string // gossip address, host:port
	Tags   Tags
	Status Status
}

// Config configures a node's membership. Zero fields mean their defaults.
type Config struct {
	// Name is the node's unique name in the cluster. Required.
	Name string
	// BindAddr is the gossip address (UDP and TCP), host:port. Port 0
	// picks a free one. Default 127.0.0.1:7946.
	BindAddr string
	// AdvertiseAddr is the address others reach this node at, if it is
	// not BindAddr.
	AdvertiseAddr string
	// Tags are this node's metadata. Tags.Partitions is required.
	Tags Tags
	// SnapshotPath keeps the members this node knew, so that after a
	// restart it rejoins them by itself. Empty: no snapshot.
	SnapshotPath string
	// Timing is the failure detector's profile. Default LocalTiming.
	Timing Timing
	// ReconnectTimeout, if set, is how long a failed member is kept (and
	// retried) before it is reaped: StatusReaped, gone for good, out of
	// the ring, by a node that sees most of the ring alive (else it stays
	// failed, retried, until this node does). Zero, the default: never;
	// a failed member stays a ring member, retried, until Forget, as in
	// Riak and Cassandra. Reaping moves the member's partitions to the
	// others without its data, and back without theirs when it returns:
	// with no rebalancing yet, writes acknowledged meanwhile can read as
	// missing after its return.
	ReconnectTimeout time.Duration
	// SerfReconnectTimeout is how long serf itself keeps and retries a
	// failed member, when ReconnectTimeout is zero; past it this node
	// keeps the member itself (learned) and retries it. Default 24 hours;
	// tests shorten it.
	SerfReconnectTimeout time.Duration
	// OnChange is called with the sorted member list after every change
	// (join, failure, recovery, leave, tag update), and by Notify. Calls
	// never overlap and come in order: each list is at least as new as
	// the one before. It must not block, nor call Notify.
	OnChange func([]Member)
	// Transport replaces the network, for tests (memberlist.MockNetwork).
	Transport memberlist.NodeAwareTransport
	// MembersPath, if set, keeps the members this node knows as failed or
	// gone for good, so that after a restart it still counts them: serf's
	// snapshot keeps only the members to rejoin, so a member stopped while
	// every other node restarted was forgotten by all of them (and its
	// partitions placed elsewhere, its hints dropped). Empty: not kept.
	MembersPath string
	// SecretKey, if set, encrypts and authenticates all gossip (AES-GCM,
	// memberlist's keyring): a member without it cannot join or be heard.
	// 16, 24 or 32 bytes.
	SecretKey []byte
	// Filter, if set, is asked about all gossip traffic and may black-hole
	// or delay it (fault injection; see Filter). Nil: the network as is.
	Filter Filter
	// Logger; default discards.
	Logger *slog.Logger
}

// Timing is a failure detector profile: how often members probe each
// other and how long a suspect has to refute before it is declared failed.
type Timing struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	PushPull       time.Duration
	// GossipToTheDead is how long gossip still goes to a member declared
	// dead, so that it hears of it and refutes (memberlist's
	// GossipToTheDeadTime; 0 means LocalTiming's). A partition healed
	// within it ends by itself; a longer one needs Reconnect.
	GossipToTheDead time.Duration
	// Reconnect is how often serf tries to rejoin a failed member (serf's
	// ReconnectInterval; 0 means LocalTiming's). Memberlist never probes a
	// member it declared dead, so past GossipToTheDead only this ends a
	// healed partition: the two sides see each other alive again one
	// attempt after the heal. Each attempt is one join to one failed
	// member; to a host that is gone it costs a dial that waits out
	// memberlist's TCP timeout.
	Reconnect time.Duration
}

// LocalTiming fits nodes on one machine or a fast LAN (memberlist's local
// profile): a killed node is declared failed after about 3 to 5 seconds,
// and the sides of a healed partition see each other again within about
// a second or two (serf's default would take up to 30).
func LocalTiming() Timing {
	return Timing{ProbeInterval: time.Second, ProbeTimeout: 200 * time.Millisecond,
		GossipInterval: 100 * time.Millisecond, SuspicionMult: 3, PushPull: 15 * time.Second,
		GossipToTheDead: 15 * time.Second, Reconnect: time.Second}
}

// LANTiming is memberlist's LAN profile: slower to declare failure, kinder
// to busy networks.
func LANTiming() Timing {
	return Timing{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		GossipInterval: 200 * time.Millisecond, SuspicionMult: 4, PushPull: 30 * time.Second,
		GossipToTheDead: 30 * time.Second, Reconnect: 5 * time.Second}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("gossip: Name is required"))
	}
	if c.Tags.Partitions <= 0 {
		errs = append(errs, errors.New("gossip: Tags.Partitions is required"))
	}
	if c.BindAddr != "" {
		if _, _, err := splitHostPort(c.BindAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip: BindAddr: %w", err))
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip: AdvertiseAddr: %w", err))
		}
	}
	return errors.Join(errs...)
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, p, nil
}

// Gossip is a running node's membership.
type Gossip struct {
	cfg    Config
	serf   *serf.Serf
	events chan serf.Event
	done   chan struct{}
	// soon wakes loop to call OnChange when an answer to askFailed
	// changed the members (buffered: one wake covers many answers).
	soon chan struct{}
	// answerLimit is the most bytes serf lets an answer to a query hold.
	answerLimit int
	// notifyMu is held from reading the members to OnChange's return, so
	// that a list read earlier is never delivered after a newer one.
	notifyMu sync.Mutex

	mu     sync.Mutex
	reaped map[string]Member // failed members serf forgot, by name (and gone ones learned of: see learn)
	// Failed members this node learned of from the others (askFailed)
	// that serf does not know: memberlist forgets a dead member after
	// GossipToTheDead, and serf tells a node that joins (or restarts)
	// later nothing of it, yet it is still a ring member everywhere else.
	learned  map[string]Member
	failedAt map[string]time.Time // when each failed member failed, as near as this node knows
	// failedAs is each member serf reported failed, as it was then: serf
	// drops every member due for reaping in one pass and only then sends
	// their reap events, so until each event is handled Members lists
	// the member from here (while failedAt holds it), not as missing.
	failedAs map[string]Member
	asking   bool // an askFailed is running
	shards   int  // the shards the next askFailed starts at (see askFailed)
	joining  bool // a joinLearned is running

	shutdownOnce sync.Once
	shutdownErr  error
}

// New starts gossiping. It does not join anyone: call Join, or rely on
// the snapshot of a previous run.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:7946"
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = LocalTiming()
	}
	if cfg.Timing.GossipToTheDead == 0 {
		cfg.Timing.GossipToTheDead = LocalTiming().GossipToTheDead
	}
	if cfg.Timing.Reconnect == 0 {
		cfg.Timing.Reconnect = LocalTiming().Reconnect
	}
	if cfg.ReconnectTimeout > 0 {
		cfg.SerfReconnectTimeout = cfg.ReconnectTimeout
	}
	if cfg.SerfReconnectTimeout <= 0 {
		cfg.SerfReconnectTimeout = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Tags.Proto = ProtocolVersion

	ml := memberlist.DefaultLocalConfig()
	host, port, _ := splitHostPort(cfg.BindAddr)
	ml.BindAddr, ml.BindPort = host, port
	if cfg.AdvertiseAddr != "" {
		ml.AdvertiseAddr, ml.AdvertisePort, _ = splitHostPort(cfg.AdvertiseAddr)
	}
	ml.ProbeInterval = cfg.Timing.ProbeInterval
	ml.ProbeTimeout = cfg.Timing.ProbeTimeout
	ml.GossipInterval = cfg.Timing.GossipInterval
	ml.SuspicionMult = cfg.Timing.SuspicionMult
	ml.PushPullInterval = cfg.Timing.PushPull
	ml.GossipToTheDeadTime = cfg.Timing.GossipToTheDead
	// A broadcast (a join, a failure) goes to RetransmitMult*log10(N+1)
	// members. With the local profile's 2, a node missed one of several
	// concurrent joiners in about one start in three of a 5-node cluster,
	// and learnt of it only at the next push-pull (`rumor cluster up` then
	// took 15-25 s instead of 0.3); with 4 (the LAN profile's) in about
	// one in a hundred; with 6 in none of 960 (TestConcurrentJoinsConverge).
	ml.RetransmitMult = 6
	if cfg.SecretKey != nil {
		ml.SecretKey = cfg.SecretKey
		ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
	}
	logWriter := slogWriter{cfg.Logger}
	ml.Logger = log.New(logWriter, "", 0)
	if cfg.Transport != nil {
		ml.Transport = cfg.Transport
	}
	if cfg.Filter != nil {
		inner := cfg.Transport
		if inner == nil {
			nt, err := newNetTransport(ml, ml.Logger)
			if err != nil {
				return nil, err
			}
			inner = nt
		}
		ml.Transport = newFilterTransport(inner, cfg.Filter)
	}

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.Name
	sc.MemberlistConfig = ml
	sc.Tags = cfg.Tags.encode()
	sc.SnapshotPath = cfg.SnapshotPath
	sc.ReconnectTimeout = cfg.SerfReconnectTimeout
	sc.ReconnectInterval = cfg.Timing.Reconnect
	sc.TombstoneTimeout = cfg.SerfReconnectTimeout
	// Serf looks for members to reap every 15 s; a shorter timeout (in
	// tests) is looked at ten times per timeout.
	sc.ReapInterval = reapEvery(cfg)
	sc.RejoinAfterLeave = false
	sc.Logger = log.New(logWriter, "", 0)
	sc.Merge = mergeCheck{q: cfg.Tags.Partitions}
	g := &Gossip{cfg: cfg, events: make(chan serf.Event, 256), done: make(chan struct{}), soon: make(chan struct{}, 1),
		answerLimit: sc.QueryResponseSizeLimit, reaped: map[string]Member{}, learned: map[string]Member{}, failedAt: map[string]time.Time{},
		failedAs: map[string]Member{}}
	sc.EventCh = g.events
	s, err := serf.Create(sc)
	if err != nil {
		if ft, ok := ml.Transport.(*filterTransport); ok {
			ft.Shutdown()
		}
		return nil, fmt.Errorf("gossip: start %s on %s: %w", cfg.Name, cfg.BindAddr, err)
	}
	g.serf = s
	if cfg.MembersPath != "" {
		// A list that cannot be read is an error, not a warning: started
		// without it, the node would place keys on fewer members than
		// the cluster has, and acknowledged writes would read as missing
		// until the others rejoined.
		b, err := os.ReadFile(cfg.MembersPath)
		var entries []failedEntry
		if err == nil {
			err = json.Unmarshal(b, &entries)
		}
		switch {
		case err == nil:
			g.learn(entries)
			g.reapLearned(time.Now())
		case !errors.Is(err, os.ErrNotExist):
			s.Shutdown() // and memberlist, and its transport
			return nil, fmt.Errorf("gossip: the members kept from the last run, %s: %w (delete the file to start with only the members gossip finds: "+
				"until every member is back, keys may be placed without the ones that are down, and writes read as missing)", cfg.MembersPath, err)
		}
	}
	go g.loop()
	g.notify()
	return g, nil
}

// saveMembers keeps the failed and gone members in MembersPath (written
// aside and renamed, so that a crash leaves the old list or the new).
func (g *Gossip) saveMembers() {
	if g.cfg.MembersPath == "" {
		return
	}
	b, _ := json.Marshal(g.savedEntries())
	tmp := g.cfg.MembersPath + ".tmp"
	err := writeSynced(tmp, b)
	if err == nil {
		err = os.Rename(tmp, g.cfg.MembersPath)
	}
	if err != nil {
		g.cfg.Logger.Warn("keeping the failed members for the next run", "path", g.cfg.MembersPath, "err", err)
	}
}

// writeSynced writes b to a new file at path and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// savedEntries are what MembersPath keeps: the failed and gone members
// (failedEntries), and the others this node sees, with no failure time.
// A node restarted while some of those are down (every node of a cluster
// stopped at once, some started again) counts them as failed members,
// from its start, until they rejoin: they are still members, and keys
// stay placed where they were.
func (g *Gossip) savedEntries() []failedEntry {
	entries := g.failedEntries()
	for _, m := range g.serf.Members() {
		if m.Name == g.cfg.Name || m.Status == serf.StatusFailed || m.Status == serf.StatusLeft {
			continue
		}
		entries = append(entries, failedEntry{Name: m.Name, Addr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), Peer: m.Tags["peer"], Client: m.Tags["client"], HTTP: m.Tags["http"]})
	}
	return entries
}

// mergeCheck refuses members (a joiner, or a cluster being joined) whose
// partition count or protocol differs from ours.
type mergeCheck struct{ q int }

func (m mergeCheck) NotifyMerge(members []*serf.Member) error {
	for _, mem := range members {
		t, err := decodeTags(mem.Tags)
		if err != nil {
			return fmt.Errorf("node %s: %w", mem.Name, err)
		}
		if t.Partitions != m.q {
			return fmt.Errorf("node %s has %d partitions and this cluster %d: a cluster's partition count is fixed when it is created", mem.Name, t.Partitions, m.q)
		}
		if t.Proto != ProtocolVersion {
			return fmt.Errorf("node %s speaks peer protocol %d and this node %d", mem.Name, t.Proto, ProtocolVersion)
		}
	}
	return nil
}

// Join contacts the given gossip addresses (any running members) and
// merges with their cluster. It returns how many it reached; an error if
// none, or if the cluster refused this node.
func (g *Gossip) Join(addrs []string) (int, error) {
	n, err := g.serf.Join(addrs, true)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "encryption is not configured"):
			err = fmt.Errorf("%w (the cluster's gossip is encrypted: give this node the cluster key, --cluster-key or RUMOR_CLUSTER_KEY; rumor cluster up keeps it in cluster.json as cluster_key)", err)
		case strings.Contains(msg, "no installed keys could decrypt"), strings.Contains(msg, "encryption is configured but remote state is not encrypted"):
			err = fmt.Errorf("%w (this node's cluster key is not the cluster's, or the cluster has none)", err)
		}
		return n, fmt.Errorf("gossip: join %s: %w", strings.Join(addrs, ","), err)
	}
	return n, nil
}

// Members returns every member this node knows, itself included, sorted
// by name. Members with tags that do not decode are left out.
func (g *Gossip) Members() []Member {
	ms := g.serf.Members()
	out := make([]Member, 0, len(ms))
	known := make(map[string]bool, len(ms))
	for _, m := range ms {
		known[m.Name] = true
		mm, ok := g.member(m)
		if ok {
			out = append(out, mm)
		}
	}
	g.mu.Lock()
	for name, m := range g.reaped {
		if !known[name] { // not back yet (its join event clears it)
			out = append(out, m)
			known[name] = true
		}
	}
	for name, m := range g.learned {
		if !known[name] {
			out = append(out, m)
			known[name] = true
		}
	}
	for name, m := range g.failedAs {
		if _, failed := g.failedAt[name]; failed && !known[name] { // dropped by serf, its reap event on the way
			out = append(out, m)
		}
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// member converts a serf member; false if its tags are bad.
func (g *Gossip) member(m serf.Member) (Member, bool) {
	t, err := decodeTags(m.Tags)
	if err != nil {
		g.cfg.Logger.Warn("ignoring a member with bad tags", "member", m.Name, "err", err)
		return Member{}, false
	}
	return Member{
		Name:   m.Name,
		Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Tags:   t,
		Status: status(m.Status),
	}, true
}

func status(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	}
	return StatusSuspect
}

// Addr is this node's gossip address (useful with port 0).
func (g *Gossip) Addr() string {
	m := g.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// Leave announces that this node leaves the cluster for good, then shuts
// down. Others mark it left; it will not rejoin by itself.
func (g *Gossip) Leave() error {
	if err := g.serf.Leave(); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return g.Shutdown()
}

// ErrUnknownMember: Forget of a name that is not a member.
var ErrUnknownMember = errors.New("no member named")

// Forget removes a failed member for good: the others mark it left (and
// placement drops it). It fails for a member that is alive (that one must
// Leave itself) and, with ErrUnknownMember, for a name this node does not
// know.
func (g *Gossip) Forget(name string) error {
	known := false
	for _, m := range g.Members() {
		if m.Name == name && m.Status == StatusAlive {
			return fmt.Errorf("gossip: %s is alive; a running node leaves by itself", name)
		}
		known = known || m.Name == name
	}
	if !known { // a typo must not look like a removal (Redis: "Unknown node")
		return fmt.Errorf("gossip: %w %q (never joined, or already removed or reaped)", ErrUnknownMember, name)
	}
	// Serf spreads the removal of a member it knows; a member known only
	// from members.json or from the others (learned) is unknown to serf
	// here or elsewhere, and its removal was a no-op: the event tells
	// every member to drop it (forgetLearned).
	if err := g.serf.RemoveFailedNode(name); err != nil {
		return fmt.Errorf("gossip: forget %s: %w", name, err)
	}
	if g.forgetLearned(name) {
		g.notify()
	}
	if err := g.serf.UserEvent(forgetEvent, []byte(name), false); err != nil {
		return fmt.Errorf("gossip: forget %s: %w", name, err)
	}
	return nil
}

// forgetEvent is the serf user event Forget sends, with the member's name.
const forgetEvent = "rumor-forget"

// forgetLearned marks a learned member as gone for good (left), as serf
// does with a failed member it knows that is removed, and reports whether
// it was one.
func (g *Gossip) forgetLearned(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.learned[name]
	if !ok {
		return false
	}
	m.Status = StatusLeft
	g.reaped[name] = m
	delete(g.learned, name)
	delete(g.failedAt, name)
	return true
}

// Shutdown stops gossiping without leaving: the others will see this node
// fail, and keep it. It is safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.shutdownOnce.Do(func() {
		g.shutdownErr = g.serf.Shutdown()
		<-g.serf.ShutdownCh()
		close(g.done)
		// Wait out a notify in progress; later ones see done and do
		// nothing (no OnChange, no write of MembersPath after Shutdown).
		g.notifyMu.Lock()
		g.notifyMu.Unlock()
	})
	return g.shutdownErr
}

// loop turns serf's member events into OnChange calls, answers the
// others' questions about failed members, and asks its own (askFailed)
// when members join and every askEvery.
func (g *Gossip) loop() {
	ask := time.NewTicker(g.askEvery())
	defer ask.Stop()
	reap := time.NewTicker(reapEvery(g.cfg))
	defer reap.Stop()
	reconnect := time.NewTicker(g.cfg.Timing.Reconnect)
	defer reconnect.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-ask.C:
			g.askFailed()
		case <-reconnect.C:
			g.joinLearned()
		case <-reap.C:
			if g.reapLearned(time.Now()) {
				g.notify()
			}
		case <-g.soon:
			g.notify()
		case e := <-g.events:
			switch e.EventType() {
			case serf.EventQuery:
				if q, ok := e.(*serf.Query); ok && q.Name == failedQuery {
					g.answerFailed(q)
				}
			case serf.EventMemberReap:
				// Serf reaps members that left (after TombstoneTimeout)
				// and members failed for ReconnectTimeout. Both stay
				// known as gone for good: a node that was down meanwhile
				// (its members.json lists the member as alive) learns
				// that from the others, instead of bringing the member
				// back as failed to everyone (a removed node held a
				// quarter of the partitions again, W=3 writes failed).
				//
				// A failed member is reaped only if ReconnectTimeout is
				// set, and only by a node that sees most of the ring
				// alive: the small side of a partition longer than
				// ReconnectTimeout kept the others as failed members,
				// retried, instead of shrinking the ring to itself (see
				// seesMajority). Otherwise serf's forgotten member stays
				// here as learned, retried by joinLearned.
				if me, ok := e.(serf.MemberEvent); ok {
					var failed []string
					for _, m := range me.Members {
						if m.Status == serf.StatusFailed {
							failed = append(failed, m.Name)
						}
					}
					keep := len(failed) > 0 && (g.cfg.ReconnectTimeout == 0 || !g.seesMajority(failed))
					switch {
					case keep && g.cfg.ReconnectTimeout == 0:
						g.cfg.Logger.Info("failed members stay in the ring, retried, until removed", "members", failed)
					case keep:
						g.cfg.Logger.Warn("not forgetting failed members: most of the ring is not alive here, as on the small side of a partition; they stay failed members, retried", "members", failed)
					}
					now := time.Now()
					g.mu.Lock()
					for _, m := range me.Members {
						delete(g.failedAs, m.Name) // handled: listed as learned or reaped from here
						mm, ok := g.member(m)
						if !ok {
							continue
						}
						if m.Status == serf.StatusFailed && keep {
							mm.Status = StatusFailed
							g.learned[m.Name] = mm // retried by joinLearned, reaped by reapLearned once most are alive
							if _, ok := g.failedAt[m.Name]; !ok {
								g.failedAt[m.Name] = now.Add(-g.cfg.SerfReconnectTimeout)
							}
							continue
						}
						switch m.Status {
						case serf.StatusFailed:
							mm.Status = StatusReaped
						case serf.StatusLeft:
							mm.Status = StatusLeft
						default:
							continue
						}
						g.reaped[m.Name] = mm
						delete(g.failedAt, m.Name) // out of the ring (see seesMajority)
						delete(g.learned, m.Name)  // learned from an answer while serf was dropping it
					}
					g.mu.Unlock()
				}
				g.notify()
			case serf.EventMemberJoin:
				others := false
				if me, ok := e.(serf.MemberEvent); ok { // a reaped or failed member back
					g.mu.Lock()
					for _, m := range me.Members {
						delete(g.reaped, m.Name)
						delete(g.learned, m.Name)
						delete(g.failedAt, m.Name)
						delete(g.failedAs, m.Name)
						others = others || m.Name != g.cfg.Name
					}
					g.mu.Unlock()
				}
				g.notify()
				if others {
					// Joined, rejoined after a restart, or a partition
					// healed: what failed that the new company knows of?
					g.askFailed()
				}
			case serf.EventMemberFailed:
				if me, ok := e.(serf.MemberEvent); ok {
					now := time.Now()
					g.mu.Lock()
					for _, m := range me.Members {
						if _, ok := g.failedAt[m.Name]; !ok {
							g.failedAt[m.Name] = now
						}
						if mm, ok := g.member(m); ok {
							mm.Status = StatusFailed
							g.failedAs[m.Name] = mm
						}
					}
					g.mu.Unlock()
				}
				g.notify()
			case serf.EventMemberLeave:
				if me, ok := e.(serf.MemberEvent); ok { // out of the ring (see seesMajority)
					g.mu.Lock()
					for _, m := range me.Members {
						delete(g.failedAt, m.Name)
					}
					g.mu.Unlock()
				}
				g.notify()
			case serf.EventMemberUpdate:
				g.notify()
			case serf.EventUser:
				// Another member's Forget of a member this node may know
				// only as learned (serf knows its own: its leave intent
				// has done the rest).
				if ue, ok := e.(serf.UserEvent); ok && ue.Name == forgetEvent && g.forgetLearned(string(ue.Payload)) {
					g.notify()
				}
			}
		}
	}
}

// failedQuery is the serf query a node asks the others which members they
// know as failed or gone for good (askFailed).
const failedQuery = "rumor-failed"

// failedEntry is one member in an answer to failedQuery.
type failedEntry struct {
	Name     string `json:"n"`
	Addr     string `json:"a,omitempty"`
	Peer     string `json:"p,omitempty"`
	Client   string `json:"c,omitempty"` // its RESP and HTTP addresses, for INFO and GET /cluster
	HTTP     string `json:"h,omitempty"`
	FailedAt int64  `json:"t,omitempty"` // Unix ms, for a failed member
	Gone     bool   `json:"g,omitempty"` // left or reaped: gone for good
	Left     bool   `json:"l,omitempty"` // gone by leaving (else reaped)
	// More, on an entry of no name that ends an answer: the answer left
	// members out to fit (ask in more shards). Older builds skip it.
	More bool `json:"m,omitempty"`
}

// failedShard is a failedQuery's payload: answer only about the members
// whose names fall in shard S of K (shardOf). No payload: shard 0 of 1.
type failedShard struct {
	S int `json:"s"`
	K int `json:"k"`
}

// maxFailedShards bounds the shards an ask splits into: 64 answers of
// serf's 1024 bytes hold some 1,000 members, ten times the most a
// cluster of rumor nodes has.
const maxFailedShards = 64

// shardOf is the shard of k that member name falls in (FNV-1a).
func shardOf(name string, k int) int {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return int(h % uint32(k))
}

// reapEvery is how often serf looks for members to reap, and this node
// for learned ones: every 15 s (serf's default), or ten times per timeout
// if that is shorter (in tests).
func reapEvery(cfg Config) time.Duration {
	return min(15*time.Second, max(cfg.SerfReconnectTimeout/10, 10*time.Millisecond))
}

// askEvery is how often a node asks the others about failed members
// besides when members join: a safety net for an answer lost on the way.
func (g *Gossip) askEvery() time.Duration { return 4 * g.cfg.Timing.PushPull }

// askFailed asks every member which members it knows as failed or gone
// for good, in the background, and adds those serf does not know here:
// failed ones to the members (learned; they are ring members everywhere
// else, and reaped at the time the others reap them), gone ones as reaped
// (what was kept for them goes to the replicas). One at a time.
func (g *Gossip) askFailed() {
	g.mu.Lock()
	if g.asking {
		g.mu.Unlock()
		return
	}
	g.asking = true
	g.mu.Unlock()
	go func() {
		defer func() { g.mu.Lock(); g.asking = false; g.mu.Unlock() }()
		// Serf caps an answer at 1024 bytes, about a dozen members: an
		// answer that had to leave some out says so, and the question
		// is asked again in four times as many shards, each answered
		// apart (a node joining a cluster with 14 failed members learned
		// 11 of them, and placed keys unlike everyone else).
		// The next ask starts at the shards this one needed: an answer
		// lost on the way (UDP, or late past the query's timeout) is
		// asked again every askEvery, and when each ask started at one
		// shard, each climb to 64 lost some again (a joiner under load
		// still missed a few of 130 failed members after 20 s).
		// It starts lower when the answers would fit fewer shards: the
		// members told of come back or are forgotten, and a count that
		// only went up asked 64 questions, each answered by every member,
		// every askEvery for good.
		g.mu.Lock()
		shards := max(g.shards, 1)
		g.mu.Unlock()
		for {
			more, sizes, ok := g.askShards(shards)
			if !ok {
				return // shut down, most likely: the next ask starts where this one did
			}
			if !more || shards == maxFailedShards {
				shards = g.shardsFor(sizes, shards)
				break
			}
			shards = min(4*shards, maxFailedShards)
		}
		g.mu.Lock()
		g.shards = shards
		g.mu.Unlock()
		if g.reapLearned(time.Now()) {
			g.notifySoon()
		}
	}()
}

// shardsFor is the shards the next ask starts at, after an ask in k
// shards whose answers held sizes[member][shard] bytes of entries: the
// fewest (a power of four, dividing k) in which every member's answer to
// every shard would hold three quarters of the most serf allows at most.
// Shard j of k/4^n is exactly shards j, j+k/4^n, ... of k (shardOf), so
// the sums are the answers' sizes, however unevenly the members hash: an
// estimate from the total started asks where an answer was cut again,
// and each climbed from there again.
func (g *Gossip) shardsFor(sizes map[string][]int, k int) int {
	for next := 1; next < k; next *= 4 {
		fits := true
		for _, per := range sizes {
			sum := make([]int, next)
			for i, n := range per {
				sum[i%next] += n
			}
			for _, n := range sum {
				fits = fits && 2+n <= g.answerLimit*3/4 // with its [ and ]
			}
		}
		if fits {
			return next
		}
	}
	return k
}

// notifySoon has loop call OnChange soon: many answers that change the
// members while one call runs make one more call, not one each.
func (g *Gossip) notifySoon() {
	select {
	case g.soon <- struct{}{}:
	default:
	}
}

// askShards asks failedQuery in k shards at once, learns the answers
// (OnChange hears of what they change as they come), and reports whether
// any answer left members out, and the bytes of entries each member
// answered to each shard; not ok if a question could not be asked.
func (g *Gossip) askShards(k int) (more bool, sizes map[string][]int, ok bool) {
	var mu sync.Mutex
	sizes = map[string][]int{}
	var wg sync.WaitGroup
	// Serf's default timeout is 16 gossip intervals (a few log N): answers
	// that come later are dropped, and dozens of questions at once, on a
	// busy machine, took longer. Waiting costs nothing but this goroutine.
	// A shard is answered by every member, even with nothing to tell:
	// once every live member has answered, the shard is done.
	param := &serf.QueryParam{Timeout: max(g.serf.DefaultQueryTimeout(), queryTimeout)}
	live := 0
	for _, m := range g.serf.Members() {
		if m.Status == serf.StatusAlive {
			live++
		}
	}
	for i := range k {
		var payload []byte
		if k > 1 {
			payload, _ = json.Marshal(failedShard{S: i, K: k})
		}
		resp, err := g.serf.Query(failedQuery, payload, param)
		if err != nil {
			g.cfg.Logger.Debug("asking for failed members", "err", err)
			wg.Wait()
			return false, nil, false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := map[string]bool{}
			for k == 1 || len(from) < live {
				var r serf.NodeResponse
				select {
				case <-g.done:
					return // shut down: stop waiting out the timeout
				case resp, ok := <-resp.ResponseCh():
					if !ok {
						return
					}
					r = resp
				}
				from[r.From] = true
				var entries []failedEntry
				if err := json.Unmarshal(r.Payload, &entries); err != nil {
					g.cfg.Logger.Warn("bad answer about failed members", "from", r.From, "err", err)
					continue
				}
				cut := len(entries) > 0 && entries[len(entries)-1].More
				if g.learn(entries) {
					g.notifySoon()
				}
				mu.Lock()
				more = more || cut
				if sizes[r.From] == nil {
					sizes[r.From] = make([]int, k)
				}
				sizes[r.From][i] += max(len(r.Payload)-2, 0) // without [ and ]
				mu.Unlock()
				if cut && k == 1 {
					return // everyone is asked again in shards: no need to wait for the rest
				}
			}
		}()
	}
	wg.Wait()
	return more, sizes, true
}

// queryTimeout is the least time a question about failed members waits
// for answers.
const queryTimeout = 3 * time.Second

// learn adds what entries say of members serf does not know here, and
// reports whether anything changed.
func (g *Gossip) learn(entries []failedEntry) bool {
	known := map[string]bool{}
	for _, m := range g.serf.Members() {
		known[m.Name] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := false
	for _, e := range entries {
		if e.Name == "" || e.Name == g.cfg.Name || known[e.Name] {
			continue // serf's own view of a member it knows is the authority
		}
		if _, ok := g.reaped[e.Name]; ok {
			continue // gone for good here already
		}
		m := Member{Name: e.Name, Addr: e.Addr, Tags: Tags{PeerAddr: e.Peer, ClientAddr: e.Client, HTTPAddr: e.HTTP, Partitions: g.cfg.Tags.Partitions, Proto: ProtocolVersion}, Status: StatusFailed}
		if e.Gone {
			m.Status = StatusReaped
			if e.Left {
				m.Status = StatusLeft
			}
			g.reaped[e.Name] = m
			delete(g.learned, e.Name)
			delete(g.failedAt, e.Name)
			changed = true
			continue
		}
		// The latest failure anyone saw: a time kept in members.json may
		// be of an earlier failure the member came back from, and a node
		// restarted with it reaped the member (ReconnectTimeout) while
		// the others still kept it, and told joiners it was gone. Later
		// is the safe side: a member is kept, retried, a little longer.
		if e.FailedAt == 0 { // seen alive when the list was saved: failed from now, once
			if _, ok := g.failedAt[e.Name]; !ok {
				g.failedAt[e.Name] = time.Now()
			}
		} else if at, old := time.UnixMilli(e.FailedAt), g.failedAt[e.Name]; at.After(old) {
			g.failedAt[e.Name] = at
		}
		if _, ok := g.learned[e.Name]; !ok {
			g.learned[e.Name] = m
			changed = true
		}
	}
	return changed
}

// joinLearned tries, in the background, to join the members learned (from
// MembersPath or from the others) that serf does not know: serf reconnects
// only to the failed members it knows itself, so after a full stop a node
// started while the others were down, and the others started later, never
// met again (each side listing the other as failed, for good). As serf's
// reconnect, it tries every Timing.Reconnect until they rejoin or are
// reaped. One attempt at a time.
func (g *Gossip) joinLearned() {
	up := map[string]bool{}
	for _, m := range g.serf.Members() {
		if m.Status == serf.StatusAlive {
			up[m.Name] = true
		}
	}
	g.mu.Lock()
	var addrs []string
	for name, m := range g.learned {
		if up[name] { // back, its join event handled before learn added it
			delete(g.learned, name)
			delete(g.failedAt, name)
			continue
		}
		if m.Addr != "" && !g.joining {
			addrs = append(addrs, name+"/"+m.Addr) // named, as serf's rejoin does: a Filter knows whom
		}
	}
	g.joining = g.joining || len(addrs) > 0
	g.mu.Unlock()
	if len(addrs) == 0 {
		return // none to try, or a try is running
	}
	go func() {
		defer func() { g.mu.Lock(); g.joining = false; g.mu.Unlock() }()
		for _, addr := range addrs { // one at a time, so that Shutdown stops the rest
			select {
			case <-g.done:
				return
			default:
			}
			if _, err := g.serf.Join([]string{addr}, true); err != nil {
				g.cfg.Logger.Debug("joining a learned member", "addr", addr, "err", err)
			}
		}
	}()
}

// reapLearned moves the learned members failed for ReconnectTimeout to
// the reaped ones, as serf does with the failed members it knows, and
// reports whether it moved any.
func (g *Gossip) reapLearned(now time.Time) bool {
	due := func() []string {
		g.mu.Lock()
		defer g.mu.Unlock()
		var names []string
		for name := range g.learned {
			if at, ok := g.failedAt[name]; ok && now.Sub(at) >= g.cfg.ReconnectTimeout {
				names = append(names, name)
			}
		}
		return names
	}
	if g.cfg.ReconnectTimeout == 0 {
		return false // never: failed members stay until Forget
	}
	names := due()
	if len(names) == 0 || !g.seesMajority(nil) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	moved := false
	for _, name := range names {
		m, ok := g.learned[name]
		if !ok {
			continue // back, or gone, meanwhile
		}
		m.Status = StatusReaped
		g.reaped[name] = m
		delete(g.learned, name)
		delete(g.failedAt, name)
		moved = true
	}
	return moved
}

// seesMajority reports whether more than half of the ring's members are
// alive here. The ring is every member serf knows but those that left,
// the learned ones, those in reaping, and the failed ones serf has
// dropped whose reap events are still on their way: serf drops every
// member due in one pass and only then sends their events, one each, so
// when the first is handled the others are gone from serf already (a 2|2
// split reaped both ways, counting 2 alive of 3; a 2|3 split tried by
// hand reaped the big side on one run in ten).
//
// Reaping takes a member out of the ring: its partitions go to the
// others and its hints to the new replicas. On the small side of a
// partition that outlived ReconnectTimeout, both sides reaped each other
// for good: the small side shrank the ring to itself, acknowledged writes
// on replicas that the whole cluster does not place the keys on, and
// handed its hints to itself, and neither side tried the other again (a
// review: about a tenth of the small side's writes unreadable after a
// merge forced by hand). A node that cannot tell a partition from
// failures keeps the members, as Riak and Cassandra keep a down node
// until an operator removes it; in a cluster of two, neither node reaps
// the other.
func (g *Gossip) seesMajority(reaping []string) bool {
	alive := 0
	ring, left := map[string]bool{}, map[string]bool{}
	for _, m := range g.serf.Members() {
		if m.Status == serf.StatusLeft {
			left[m.Name] = true
			continue
		}
		ring[m.Name] = true
		if m.Status == serf.StatusAlive {
			alive++
		}
	}
	g.mu.Lock()
	for name := range g.learned {
		if _, gone := g.reaped[name]; !gone {
			ring[name] = true
		}
	}
	for name := range g.failedAt { // failed, and not gone for good: still in the ring
		if _, gone := g.reaped[name]; !gone && !left[name] {
			ring[name] = true
		}
	}
	g.mu.Unlock()
	for _, name := range reaping {
		ring[name] = true
	}
	return 2*alive > len(ring)
}

// answerFailed answers a failedQuery with the members of the shard asked
// about that this node knows as failed (serf's and learned ones) or gone
// for good, as many as fit: if they do not all fit, without their client
// and HTTP addresses (only shown in INFO) first, and then the least urgent
// left out, with a last entry that says so (More).
func (g *Gossip) answerFailed(q *serf.Query) {
	entries := g.failedEntries()
	if len(q.Payload) > 0 {
		var sh failedShard
		if err := json.Unmarshal(q.Payload, &sh); err != nil || sh.K < 1 || sh.K > maxFailedShards || sh.S < 0 || sh.S >= sh.K {
			g.cfg.Logger.Debug("bad question about failed members", "payload", string(q.Payload), "err", err)
			return
		}
		entries = slices.DeleteFunc(entries, func(e failedEntry) bool { return shardOf(e.Name, sh.K) != sh.S })
	}
	if len(entries) == 0 && len(q.Payload) == 0 {
		return // nothing to tell; a shard is answered even empty, so the asker need not wait out its timeout
	}
	stripped, cut := false, false
	for {
		answer := entries
		if cut {
			answer = append(entries[:len(entries):len(entries)], failedEntry{More: true})
		}
		b := []byte("[]")
		if len(answer) > 0 {
			b, _ = json.Marshal(answer)
		}
		err := q.Respond(b)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "exceeds limit") {
			g.cfg.Logger.Debug("answering about failed members", "err", err)
			return
		}
		switch {
		case !stripped:
			for i := range entries {
				entries[i].Client, entries[i].HTTP = "", ""
			}
			stripped = true
		case len(entries) == 0:
			return
		default:
			entries = entries[:len(entries)*3/4]
			cut = true
		}
	}
}

// failedEntries lists the members this node knows as failed (serf's and
// learned ones) or gone for good, most urgent first: failed members
// change placement; gone ones only where their hints go.
func (g *Gossip) failedEntries() []failedEntry {
	now := time.Now()
	var entries []failedEntry
	g.mu.Lock()
	failedAt := func(name string) int64 {
		at, ok := g.failedAt[name]
		if !ok {
			at = now
		}
		return at.UnixMilli()
	}
	for _, m := range g.serf.Members() {
		switch m.Status {
		case serf.StatusFailed:
			e := failedEntry{Name: m.Name, Addr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), Peer: m.Tags["peer"], Client: m.Tags["client"], HTTP: m.Tags["http"], FailedAt: failedAt(m.Name)}
			entries = append(entries, e)
		case serf.StatusLeft:
			entries = append(entries, failedEntry{Name: m.Name, Gone: true, Left: true})
		}
	}
	for name, m := range g.learned {
		entries = append(entries, failedEntry{Name: name, Addr: m.Addr, Peer: m.Tags.PeerAddr, Client: m.Tags.ClientAddr, HTTP: m.Tags.HTTPAddr, FailedAt: failedAt(name)})
	}
	for name, m := range g.reaped {
		entries = append(entries, failedEntry{Name: name, Gone: true, Left: m.Status == StatusLeft})
	}
	g.mu.Unlock()
	slices.SortStableFunc(entries, func(a, b failedEntry) int {
		switch {
		case a.Gone == b.Gone:
			return strings.Compare(a.Name, b.Name)
		case b.Gone:
			return -1
		}
		return 1
	})
	return entries
}

// Notify calls Config.OnChange with the current members, in order with
// the calls gossip makes by itself. After Join, it applies the members the
// join brought without waiting for their events (which may come before or
// after: either way, the last list delivered is the newest).
func (g *Gossip) Notify() { g.notify() }

func (g *Gossip) notify() {
	g.notifyMu.Lock()
	defer g.notifyMu.Unlock()
	select {
	case <-g.done:
		return
	default:
	}
	g.saveMembers()
	if g.cfg.OnChange != nil {
		g.cfg.OnChange(g.Members())
	}
}

// slogWriter feeds serf's and memberlist's log lines to slog, at debug
// level unless they say [WARN] or [ERR].
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(msg, "[ERR]"):
		w.l.Error(msg, "component", "gossip")
	case strings.Contains(msg, "[WARN]"):
		w.l.Warn(msg, "component", "gossip")
	default:
		w.l.Debug(msg, "component", "gossip")
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}
