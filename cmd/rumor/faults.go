package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rumor-kv/rumor/node"
	"github.com/rumor-kv/rumor/wire"
	"github.com/urfave/cli/v2"
)

// Faults on a local cluster. `rumor cluster partition|isolate|heal|delay`
// keep the cluster's faults in cluster.json as a faultSpec, compute each
// node's node.FaultState from it (nodeFaults), and push that state whole
// with PUT /faults to every running node, so that both sides of every cut
// are set (a node cannot tell incoming streams apart; see node.Faults).
// A restarted node forgets its faults: `start` and `add` push them again
// once the node answers PING. Nodes must run with --allow-faults, which
// `up` and `add` pass; if a running node lacks it, the command is refused
// before anything changes.

// faultSpec is the cluster's faults as the user gave them.
type faultSpec struct {
	// Groups of a partition; the members not named form one more group.
	// `isolate n3` is the partition [[n3]].
	Groups [][]string `json:"groups,omitempty"`
	// Delays by node: traffic to and from the node is held back that long.
	Delays map[string]string `json:"delays,omitempty"`
}

func (s *faultSpec) empty() bool { return s == nil || (len(s.Groups) == 0 && len(s.Delays) == 0) }

// members returns the names of the nodes that were not removed, in order.
func (st *clusterState) members() []string {
	var names []string
	for _, nd := range st.Nodes {
		if !nd.Removed {
			names = append(names, nd.Name)
		}
	}
	return names
}

// unknownNode is the error for a name that is not a member.
func unknownNode(name string, members []string) error {
	return fmt.Errorf("no node %q in the cluster (nodes: %s)", name, strings.Join(members, ", "))
}

// parseGroups reads a partition's groups, each a comma-separated list of
// member names, and checks that every name is a member named once, and
// that with the rest (the members not named) there are two groups at least.
func parseGroups(args, members []string) ([][]string, error) {
	if len(args) == 0 {
		return nil, errors.New("name the groups, e.g. `rumor cluster partition n1,n2 n3` (nodes not named form one more group)")
	}
	seen := map[string]int{}
	var groups [][]string
	for i, arg := range args {
		var g []string
		for _, name := range strings.Split(arg, ",") {
			name = strings.TrimSpace(name)
			switch j, dup := seen[name]; {
			case name == "":
				return nil, fmt.Errorf("group %q has an empty node name", arg)
			case !slices.Contains(members, name):
				return nil, unknownNode(name, members)
			case dup && j == i:
				return nil, fmt.Errorf("%s is named twice in group %q", name, arg)
			case dup:
				return nil, fmt.Errorf("%s is in two groups, %q and %q: a node is on one side of a partition", name, args[j], arg)
			}
			seen[name] = i
			g = append(g, name)
		}
		groups = append(groups, g)
	}
	if len(withRest(groups, members)) < 2 {
		return nil, fmt.Errorf("the groups put every node on one side: nothing to partition")
	}
	return groups, nil
}

// withRest returns groups plus the group of the members they do not
// name, if any.
func withRest(groups [][]string, members []string) [][]string {
	named := map[string]bool{}
	for _, g := range groups {
		for _, name := range g {
			named[name] = true
		}
	}
	var rest []string
	for _, name := range members {
		if !named[name] {
			rest = append(rest, name)
		}
	}
	out := slices.Clone(groups)
	if len(rest) > 0 {
		out = append(out, rest)
	}
	return out
}

// parseDelay reads a delay argument: a duration from 0 (none) to
// node.MaxFaultDelay.
func parseDelay(arg string) (time.Duration, error) {
	d, err := time.ParseDuration(arg)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration such as 50ms or 1s (0 removes the delay)", arg)
	case d < 0:
		return 0, fmt.Errorf("delay %v is negative", d)
	case d > node.MaxFaultDelay:
		return 0, fmt.Errorf("delay %v exceeds the longest, %v", d, node.MaxFaultDelay)
	}
	return d, nil
}

// nodeFaults computes each member's state from the spec: in a partition
// a node blocks every member outside its group; a delay on node D holds
// back D's traffic to all ("*") and every other node's traffic to D.
// Members are named; every member gets a state, empty if it has no faults.
func nodeFaults(spec *faultSpec, members []string) map[string]node.FaultState {
	out := map[string]node.FaultState{}
	for _, name := range members {
		out[name] = node.FaultState{}
	}
	if spec == nil {
		return out
	}
	if len(spec.Groups) > 0 {
		groups := withRest(spec.Groups, members)
		groupOf := map[string]int{}
		for i, g := range groups {
			for _, name := range g {
				groupOf[name] = i
			}
		}
		for _, x := range members {
			s := out[x]
			for _, y := range members {
				if groupOf[y] != groupOf[x] {
					s.Blocked = append(s.Blocked, y)
				}
			}
			out[x] = s
		}
	}
	for _, d := range slices.Sorted(maps.Keys(spec.Delays)) {
		dur, err := time.ParseDuration(spec.Delays[d])
		if err != nil || dur <= 0 || !slices.Contains(members, d) {
			continue
		}
		for _, x := range members {
			s := out[x]
			if s.Delays == nil {
				s.Delays = map[string]time.Duration{}
			}
			if x == d {
				s.Delays["*"] += dur
			} else {
				s.Delays[d] += dur
			}
			out[x] = s
		}
	}
	return out
}

// summary is the spec on one line: "partition n1 | n2,n3; delay n2 50ms",
// "isolate n3", or "none".
func (s *faultSpec) summary(members []string) string {
	if s.empty() {
		return "none"
	}
	var parts []string
	if len(s.Groups) == 1 && len(s.Groups[0]) == 1 {
		parts = append(parts, "isolate "+s.Groups[0][0])
	} else if len(s.Groups) > 0 {
		var gs []string
		for _, g := range withRest(s.Groups, members) {
			gs = append(gs, strings.Join(g, ","))
		}
		parts = append(parts, "partition "+strings.Join(gs, " | "))
	}
	for _, name := range slices.Sorted(maps.Keys(s.Delays)) {
		parts = append(parts, "delay "+name+" "+s.Delays[name])
	}
	return strings.Join(parts, "; ")
}

// faultsClient talks to the nodes' HTTP API.
var faultsClient = &http.Client{Timeout: 3 * time.Second}

// faultsRequest sends GET or PUT /faults and decodes the node's view.
func faultsRequest(nd *clusterNode, method string, body []byte) (node.FaultsView, error) {
	req, err := http.NewRequest(method, "http://"+nd.HTTPAddr+"/faults", bytes.NewReader(body))
	if err != nil {
		return node.FaultsView{}, err
	}
	resp, err := faultsClient.Do(req)
	if err != nil {
		return node.FaultsView{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return node.FaultsView{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return node.FaultsView{}, errors.New(e.Error)
		}
		return node.FaultsView{}, fmt.Errorf("%s /faults: HTTP %d (a rumor without fault injection?)", method, resp.StatusCode)
	}
	var v node.FaultsView
	if err := json.Unmarshal(b, &v); err != nil {
		return node.FaultsView{}, fmt.Errorf("%s /faults: %w", method, err)
	}
	return v, nil
}

// checkFaultsEnabled refuses, before anything changes, if a running node
// does not take faults. Nodes that do not answer are left to pushFaults
// to report.
func checkFaultsEnabled(st *clusterState) error {
	for _, nd := range st.Nodes {
		if nd.Removed || !alive(nd.PID) {
			continue
		}
		if v, err := faultsRequest(nd, "GET", nil); err == nil && !v.Enabled {
			return fmt.Errorf("%s: %w", nd.Name, wire.ErrFaultsDisabled)
		}
	}
	return nil
}

// pushFaults sends every running member its whole state, printing what
// each now reports; it fails naming the nodes that could not be reached
// or refused. A node that is not running gets its state when started.
func pushFaults(st *clusterState) error {
	members := st.members()
	states := nodeFaults(st.Faults, members)
	var failed []string
	for _, nd := range st.Nodes {
		if nd.Removed {
			continue
		}
		if !alive(nd.PID) {
			fmt.Printf("  %s: not running; its faults are applied when it starts\n", nd.Name)
			continue
		}
		body, _ := json.Marshal(states[nd.Name])
		v, err := faultsRequest(nd, "PUT", body)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", nd.Name, err))
			continue
		}
		fmt.Printf("  %s: %s\n", nd.Name, v.State)
	}
	if len(failed) > 0 {
		return fmt.Errorf("faults not applied on %s; they are saved and applied again when a node is started", strings.Join(failed, ", "))
	}
	return nil
}

// positionals returns a command's arguments and the state directory,
// accepting --dir among the arguments too (urfave/cli stops parsing flags
// at the first argument).
func positionals(c *cli.Context) (args []string, dir string, err error) {
	dir = c.String("dir")
	all := c.Args().Slice()
	for i := 0; i < len(all); i++ {
		switch a := all[i]; {
		case a == "--dir" || a == "-dir":
			if i+1 == len(all) {
				return nil, "", errors.New("--dir needs a value")
			}
			dir = all[i+1]
			i++
		case strings.HasPrefix(a, "--dir="):
			dir = strings.TrimPrefix(a, "--dir=")
		default:
			args = append(args, a)
		}
	}
	return args, dir, nil
}

// faultCommand runs one change of the cluster's faults: change checks the
// arguments and edits the spec; then, if every running node takes faults,
// the spec is saved and pushed.
func faultCommand(change func(spec *faultSpec, args, members []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, dir, err := positionals(c)
		if err != nil {
			return err
		}
		st, err := loadState(dir)
		if err != nil {
			return err
		}
		spec := faultSpec{}
		if st.Faults != nil {
			spec = faultSpec{Groups: st.Faults.Groups, Delays: maps.Clone(st.Faults.Delays)}
		}
		members := st.members()
		if err := change(&spec, args, members); err != nil {
			return err
		}
		if err := checkFaultsEnabled(st); err != nil {
			return err
		}
		st.Faults = nil
		if !spec.empty() {
			st.Faults = &spec
		}
		if err := st.save(dir); err != nil {
			return err
		}
		fmt.Printf("faults: %s\n", st.Faults.summary(members))
		return pushFaults(st)
	}
}

func partitionFaults(spec *faultSpec, args, members []string) error {
	groups, err := parseGroups(args, members)
	if err != nil {
		return err
	}
	spec.Groups = groups
	return nil
}

func isolateFaults(spec *faultSpec, args, members []string) error {
	if len(args) != 1 {
		return errors.New("name one node to isolate, e.g. `rumor cluster isolate n3`")
	}
	return partitionFaults(spec, args, members) // n3 alone, the rest together
}

func healFaults(spec *faultSpec, args, _ []string) error {
	if len(args) > 0 {
		return fmt.Errorf("heal takes no arguments (it removes every fault), not %q", strings.Join(args, " "))
	}
	*spec = faultSpec{}
	return nil
}

func delayFaults(spec *faultSpec, args, members []string) error {
	if len(args) != 2 {
		return errors.New("name a node and a duration, e.g. `rumor cluster delay n2 50ms` (0 removes it)")
	}
	if !slices.Contains(members, args[0]) {
		return unknownNode(args[0], members)
	}
	d, err := parseDelay(args[1])
	if err != nil {
		return err
	}
	if d == 0 {
		delete(spec.Delays, args[0])
		return nil
	}
	if spec.Delays == nil {
		spec.Delays = map[string]string{}
	}
	spec.Delays[args[0]] = d.String()
	return nil
}

// reapplyFaults pushes the saved faults after a node (re)started, if any.
func reapplyFaults(st *clusterState) error {
	if st.Faults.empty() {
		return nil
	}
	fmt.Printf("applying the cluster's faults (%s):\n", st.Faults.summary(st.members()))
	return pushFaults(st)
}
