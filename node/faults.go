package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rumor-kv/rumor/gossip"
	"github.com/rumor-kv/rumor/wire"
)

// MaxFaultDelay is the longest delay a fault may add.
const MaxFaultDelay = time.Minute

// FaultState is the whole fault state of one node: the nodes it is cut off
// from and the delays of its outgoing traffic. Its JSON form is
//
//	{"blocked": ["n3"], "delays": {"n2": "50ms", "*": "10ms"}}
//
// with durations in time.ParseDuration's syntax. The zero value is no
// faults.
type FaultState struct {
	Blocked []string                 // node names, sorted, no duplicates
	Delays  map[string]time.Duration // by node name, "*" for all; no zero entries
}

// faultJSON is FaultState's wire form.
type faultJSON struct {
	Blocked []string          `json:"blocked"`
	Delays  map[string]string `json:"delays"`
}

// MarshalJSON writes the JSON form: blocked is always a list and delays
// always an object.
func (s FaultState) MarshalJSON() ([]byte, error) {
	j := faultJSON{Blocked: slices.Clone(s.Blocked), Delays: map[string]string{}}
	if j.Blocked == nil {
		j.Blocked = []string{}
	}
	for name, d := range s.Delays {
		j.Delays[name] = d.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the JSON form with ParseFaultState's checks.
func (s *FaultState) UnmarshalJSON(b []byte) error {
	v, err := ParseFaultState(b)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseFaultState decodes and checks a FaultState in its JSON form. It
// rejects anything but one JSON object with the fields "blocked" and
// "delays", blocked names that are empty or "*", and delays that are not
// durations between 0 and MaxFaultDelay. Unknown node names are fine:
// a node may be named before it joins. The result is normalised.
func ParseFaultState(b []byte) (FaultState, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] != '{' {
		return FaultState{}, errors.New("node: fault state: want a JSON object such as {\"blocked\":[\"n3\"],\"delays\":{\"n2\":\"50ms\"}}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j faultJSON
	if err := dec.Decode(&j); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty")
		}
		return FaultState{}, fmt.Errorf("node: fault state: %w (want a JSON object such as {\"blocked\":[\"n3\"],\"delays\":{\"n2\":\"50ms\"}})", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return FaultState{}, errors.New("node: fault state: trailing data after the JSON object")
	}
	return j.state()
}

// state converts and checks the wire form.
func (j faultJSON) state() (FaultState, error) {
	s := FaultState{Blocked: j.Blocked}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(j.Delays)) {
		text := j.Delays[name]
		d, err := time.ParseDuration(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("delay for %q: %q is not a duration such as \"50ms\"", name, text))
			continue
		}
		if s.Delays == nil {
			s.Delays = map[string]time.Duration{}
		}
		s.Delays[name] = d
	}
	if err := s.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return FaultState{}, fmt.Errorf("node: fault state: %w", errors.Join(errs...))
	}
	return s.normalised(), nil
}

// Validate reports every problem at once.
func (s FaultState) Validate() error {
	var errs []error
	for _, name := range s.Blocked {
		if name == "" || name == "*" {
			errs = append(errs, fmt.Errorf("blocked: %q is not a node name", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Delays)) {
		d := s.Delays[name]
		switch {
		case name == "":
			errs = append(errs, errors.New("delays: a delay needs a node name or \"*\""))
		case d < 0:
			errs = append(errs, fmt.Errorf("delay for %q: %v is negative", name, d))
		case d > MaxFaultDelay:
			errs = append(errs, fmt.Errorf("delay for %q: %v exceeds the longest, %v", name, d, MaxFaultDelay))
		}
	}
	return errors.Join(errs...)
}

// normalised returns s with blocked names sorted and unique and zero
// delays dropped, so that equal states compare and print alike.
func (s FaultState) normalised() FaultState {
	out := FaultState{}
	if len(s.Blocked) > 0 {
		out.Blocked = slices.Compact(slices.Sorted(slices.Values(s.Blocked)))
	}
	for name, d := range s.Delays {
		if d != 0 {
			if out.Delays == nil {
				out.Delays = map[string]time.Duration{}
			}
			out.Delays[name] = d
		}
	}
	return out
}

// Empty reports whether s has no faults.
func (s FaultState) Empty() bool { return len(s.Blocked) == 0 && len(s.Delays) == 0 }

// String is a one-line summary: "blocks n1,n3; delays n2 50ms, * 10ms",
// or "none".
func (s FaultState) String() string {
	var parts []string
	if len(s.Blocked) > 0 {
		parts = append(parts, "blocks "+strings.Join(s.Blocked, ","))
	}
	if len(s.Delays) > 0 {
		var ds []string
		for _, name := range slices.Sorted(maps.Keys(s.Delays)) {
			ds = append(ds, name+" "+s.Delays[name].String())
		}
		parts = append(parts, "delays "+strings.Join(ds, ", "))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// Faults is a node's current fault state. A node started with
// Config.AllowFaults puts it between itself and the network, so that
// tests and `rumor cluster partition|isolate|heal|delay` can cut it off
// from named nodes or slow its traffic down.
//
// A blocked node is a black hole, as under a real partition: gossip
// packets to and from it vanish, gossip stream dials to it wait out their
// timeout and fail as a timeout, and peer calls to it hang until the
// caller's deadline. Nothing is refused outright, so the failure detector
// and the coordinator see what they would see on a real network.
//
// A delay holds back this node's outgoing traffic: gossip packets to the
// node are sent that much later, a gossip stream dial waits that long
// first, and a peer call waits that long before it is sent (its reply is
// not delayed). Delays are keyed by node name, "*" meaning every node; a
// node named and "*" add up.
//
// The filter sees outgoing traffic by destination name and incoming gossip
// packets by their source address. Incoming gossip streams and incoming
// peer connections come from ephemeral ports and cannot be told apart, so
// they pass: a partition needs both sides' filters set, which is why the
// CLI pushes the whole state to every node.
//
// Set replaces the state whole (PUT /faults); the queries are cheap and
// lock-free, made on every packet and peer call. All methods are safe for
// concurrent use. The zero value has no faults.
type Faults struct {
	cur atomic.Pointer[faultSnapshot]
}

// faultSnapshot is one immutable state with a set for lookups.
type faultSnapshot struct {
	state   FaultState
	blocked map[string]bool
}

// Set replaces the whole state with s (normalised). Setting the same state
// twice is the same as once. It fails, changing nothing, if s is invalid.
func (f *Faults) Set(s FaultState) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("node: fault state: %w", err)
	}
	s = s.normalised()
	snap := &faultSnapshot{state: s, blocked: map[string]bool{}}
	for _, name := range s.Blocked {
		snap.blocked[name] = true
	}
	f.cur.Store(snap)
	return nil
}

// State returns a copy of the current state.
func (f *Faults) State() FaultState {
	snap := f.cur.Load()
	if snap == nil {
		return FaultState{}
	}
	s := snap.state
	return FaultState{Blocked: slices.Clone(s.Blocked), Delays: maps.Clone(s.Delays)}
}

// Blocked reports whether traffic to and from the named node vanishes.
func (f *Faults) Blocked(name string) bool {
	snap := f.cur.Load()
	return snap != nil && snap.blocked[name]
}

// Delay is how long traffic to the named node is held back: its own delay
// plus the delay for all ("*"). An empty name (a node not known yet) gets
// the delay for all.
func (f *Faults) Delay(name string) time.Duration {
	snap := f.cur.Load()
	if snap == nil || snap.state.Delays == nil {
		return 0
	}
	d := snap.state.Delays["*"]
	if name != "" && name != "*" {
		d += snap.state.Delays[name]
	}
	return d
}

// faultSummary lists a state's parts in INFO's key:value style.
func faultSummary(s FaultState) (blocked, delays string) {
	var ds []string
	for _, name := range slices.Sorted(maps.Keys(s.Delays)) {
		ds = append(ds, name+"="+s.Delays[name].String())
	}
	return strings.Join(s.Blocked, ","), strings.Join(ds, ",")
}

// FaultsView is what GET /faults shows: whether the node takes faults
// (Config.AllowFaults) and its current state, as
// {"enabled": true, "blocked": [...], "delays": {...}}.
type FaultsView struct {
	Enabled bool
	State   FaultState
}

type faultsViewJSON struct {
	Enabled bool `json:"enabled"`
	faultJSON
}

// MarshalJSON writes the flat JSON form.
func (v FaultsView) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(v.State)
	if err != nil {
		return nil, err
	}
	var j faultsViewJSON
	if err := json.Unmarshal(b, &j.faultJSON); err != nil {
		return nil, err
	}
	j.Enabled = v.Enabled
	return json.Marshal(j)
}

// UnmarshalJSON reads the flat JSON form, checking the state as
// ParseFaultState does (unknown fields are ignored: a newer node may
// report more).
func (v *FaultsView) UnmarshalJSON(b []byte) error {
	var j faultsViewJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	s, err := j.state()
	if err != nil {
		return err
	}
	*v = FaultsView{Enabled: j.Enabled, State: s}
	return nil
}

// The node's side: the control (HTTP /faults, INFO), the gossip filter
// and the peer calls.

func (n *Node) faultsView() any {
	return FaultsView{Enabled: n.cfg.AllowFaults, State: n.faults.State()}
}

// setFaults serves PUT /faults: without Config.AllowFaults it refuses and
// changes nothing.
func (n *Node) setFaults(body []byte) (any, error) {
	if !n.cfg.AllowFaults {
		return nil, wire.ErrFaultsDisabled
	}
	s, err := ParseFaultState(body)
	if err != nil {
		return nil, err
	}
	if err := n.faults.Set(s); err != nil {
		return nil, err
	}
	n.cfg.Logger.Warn("fault injection: state replaced", "faults", s.String())
	return n.faultsView(), nil
}

func (n *Node) faultsInfo() wire.InfoSection {
	blocked, delays := faultSummary(n.faults.State())
	enabled := "0"
	if n.cfg.AllowFaults {
		enabled = "1"
	}
	return wire.InfoSection{Name: "Faults", Fields: [][2]string{
		{"faults_enabled", enabled}, {"faults_blocked", blocked}, {"faults_delays", delays},
	}}
}

// gossipFilter asks f about the member at a gossip address, by its name
// if memberlist gave it, else by the name the current member list gives
// the address. An address not in the list yet gets only the delay for
// all.
func (cs *clusterState) gossipFilter(f *Faults) gossip.Filter {
	return func(name, addr string) (bool, time.Duration) {
		if name == "" {
			cs.mu.Lock()
			name = cs.addrs[addr]
			cs.mu.Unlock()
		}
		if name == "" {
			return false, f.Delay("")
		}
		return f.Blocked(name), f.Delay(name)
	}
}

// beforeCall applies f to a peer call to the named node: to a blocked
// node the call hangs until ctx is done (or the transport closes), as it
// would across a partition; a delay holds it back that long first.
func (f *Faults) beforeCall(ctx context.Context, closed <-chan struct{}, to, method string) error {
	var wait <-chan time.Time // nil: forever
	if !f.Blocked(to) {
		d := f.Delay(to)
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		wait = timer.C
	}
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: peer %s: %s: held by a fault: %w", to, method, ctx.Err())
	case <-closed:
		return fmt.Errorf("%w: %w: %s: transport closed", wire.ErrPeerUnavailable, wire.ErrNotSent, to)
	}
}
