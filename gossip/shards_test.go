package gossip

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestAJoinerLearnsEveryFailedMember: a node that joins learns the failed
// members from the others' answers to a serf query, which serf caps at
// 1024 bytes; the answer dropped members to fit, so with more than about
// a dozen failed members (with real names and addresses) the joiner never
// learned some, and placed keys without them while every other node
// placed keys on them (found in review: 11 of 14 in a real cluster).
// Now an answer that leaves members out says so, and the question is
// asked again in shards.
func TestAJoinerLearnsEveryFailedMember(t *testing.T) {
	for _, n := range []int{20, 120} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			file, want := membersFile(t, n)
			a := startWith(t, "a", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.MembersPath = file })
			if got := summary(a.Members()); got != "a=alive "+strings.Join(want, " ") {
				t.Fatalf("a, from its members file: %s", got)
			}
			// b asks again every 4s (an answer may be lost on the way), in
			// as many shards as the join's ask needed; before the shards,
			// every ask had the same answer, cut.
			bn := startWith(t, "b", "127.0.0.1:0", 64, "", nil, func(*Config) {})
			if _, err := bn.Join([]string{a.Addr()}); err != nil {
				t.Fatal(err)
			}
			all := "a=alive b=alive " + strings.Join(want, " ")
			testutil.Eventually(t, 20*time.Second, "b to learn every failed and gone member", func() bool { return summary(bn.Members()) == all })
		})
	}
}

// membersFile writes a members file that lists n failed members, with
// real-looking names and addresses, and 10 gone for good, and returns it
// with the members as summary lists them.
func membersFile(t *testing.T, n int) (string, []string) {
	entries, want := failedMembers(n, nil)
	// and some gone for good, which the answers list last
	for i := range 10 {
		entries = append(entries, failedEntry{Name: fmt.Sprintf("rumor-gone-%03d.example.internal", i), Gone: true, Left: true})
		want = append(want, entries[len(entries)-1].Name+"=left")
	}
	slices.Sort(want)
	return writeMembers(t, entries), want
}

// failedMembers makes n failed members with real-looking names and
// addresses, only names keep accepts if keep is set, and their summary.
func failedMembers(n int, keep func(name string) bool) ([]failedEntry, []string) {
	now := time.Now().UnixMilli()
	var entries []failedEntry
	var want []string
	for i := 0; len(entries) < n; i++ {
		name := fmt.Sprintf("rumor-node-%03d.example.internal", i)
		if keep != nil && !keep(name) {
			continue
		}
		entries = append(entries, failedEntry{Name: name, Addr: fmt.Sprintf("10.1.2.%d:7946", i), Peer: fmt.Sprintf("10.1.2.%d:7947", i),
			Client: fmt.Sprintf("10.1.2.%d:6379", i), HTTP: fmt.Sprintf("10.1.2.%d:8080", i), FailedAt: now})
		want = append(want, name+"=failed")
	}
	return entries, want
}

// writeMembers writes entries as a members file (MembersPath) and
// returns its path.
func writeMembers(t *testing.T, entries []failedEntry) string {
	t.Helper()
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a.members")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestAJoinerPlacesFailedMembersAsTheirAnswerComes: OnChange, which
// places keys, heard of the failed members a joiner learned only when the
// whole ask ended: the unsharded question waits out queryTimeout (3 s),
// since members with nothing to tell do not answer it. It hears of them
// as the answer comes now.
func TestAJoinerPlacesFailedMembersAsTheirAnswerComes(t *testing.T) {
	t.Parallel()
	file, want := membersFile(t, 3)
	a := startWith(t, "a", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.MembersPath = file })
	w := &watcher{}
	bn := startWith(t, "b", "127.0.0.1:0", 64, "", w, func(c *Config) { c.Timing.PushPull = time.Minute })
	if _, err := bn.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	all := "a=alive b=alive " + strings.Join(want, " ")
	testutil.Eventually(t, 20*time.Second, "Members lists every failed member", func() bool { return summary(bn.Members()) == all })
	testutil.Eventually(t, queryTimeout*2/3, "OnChange lists every failed member, well before the ask's wait ends", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return summary(w.last) == all
	})
}

// TestTheShardCountGoesDownWhenTheAnswersShrink: a joiner that needed 64
// shards to learn 120 failed members kept asking in 64 (each question
// answered by every member) every askEvery, for good, after they came
// back: the count went down only when nobody answered anything, and the
// members gone for good are answered for ever. Once the answers fit
// fewer shards, the next ask starts there.
func TestTheShardCountGoesDownWhenTheAnswersShrink(t *testing.T) {
	t.Parallel()
	file, want := membersFile(t, 120)
	// Neither asks by itself meanwhile (every 4 push-pulls): a asking b
	// between the two clears below learned the 120 again.
	a := startWith(t, "a", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.MembersPath = file; c.Timing.PushPull = time.Minute })
	bn := startWith(t, "b", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.Timing.PushPull = time.Minute })
	if _, err := bn.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	all := "a=alive b=alive " + strings.Join(want, " ")
	testutil.Eventually(t, 20*time.Second, "b learns every member", func() bool { return summary(bn.Members()) == all })
	idle := func() bool { bn.mu.Lock(); defer bn.mu.Unlock(); return !bn.asking }
	shards := func() int { bn.mu.Lock(); defer bn.mu.Unlock(); return bn.shards }
	testutil.Eventually(t, 20*time.Second, "b's ask ends", idle)
	// and a's, begun when b joined: answers from b still coming in
	// after the clears below taught a the 120 again.
	testutil.Eventually(t, 20*time.Second, "a's ask ends", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return !a.asking })
	if got := shards(); got < 4 {
		t.Fatalf("b learned 120 failed members with %d shards: the test proves nothing", got)
	}
	for _, g := range []*Gossip{a, bn} { // the failed members are back, and gone from here again
		g.mu.Lock()
		clear(g.learned)
		clear(g.failedAt)
		g.mu.Unlock()
	}
	bn.askFailed()
	testutil.Eventually(t, 20*time.Second, "b's ask ends", idle)
	if got := shards(); got != 1 {
		t.Errorf("with only 10 gone members to tell (one answer), b's next ask starts at %d shards, want 1", got)
	}
	if got := summary(bn.Members()); !strings.Contains(got, "rumor-gone-009.example.internal=left") {
		t.Errorf("b forgot the gone members: %s", got)
	}
}

// A question about failed members with a shard that makes no sense gets
// no answer (and harms nothing); a sensible one is answered.
func TestFailedQuestionsWithBadShardsAreNotAnswered(t *testing.T) {
	file := writeMembers(t, []failedEntry{{Name: "gone", Gone: true, Left: true}})
	a := startWith(t, "a", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.MembersPath = file })
	bn := startWith(t, "b", "127.0.0.1:0", 64, "", nil, func(*Config) {})
	if _, err := bn.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	answers := func(payload string) int {
		t.Helper()
		resp, err := bn.serf.Query(failedQuery, []byte(payload), nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for r := range resp.ResponseCh() {
			if r.From == "a" {
				n++
			}
		}
		return n
	}
	for _, p := range []string{`garbage`, `{"s":4,"k":4}`, `{"s":-1,"k":4}`, `{"s":0,"k":0}`, `{"s":0,"k":100000}`, `[1,2]`} {
		if n := answers(p); n != 0 {
			t.Errorf("question %s: %d answers from a, want none", p, n)
		}
	}
	if n := answers(`{"s":0,"k":1}`); n != 1 {
		t.Errorf("a sensible question: %d answers from a, want 1", n)
	}
}

// TestTheNextAskStartsAtShardsThatFit: the next ask's shard count was
// estimated from the bytes a member answered in all, as if the members
// spread evenly over the shards. 16 failed members that all fall in one
// shard of 4 (names alike, or chance with a few dozen) sent every ask
// to 4 shards, where that shard's answer was cut again, and each ask
// climbed to 16 from there. The count is now computed from the answers
// to each shard, and the next ask is not cut.
func TestTheNextAskStartsAtShardsThatFit(t *testing.T) {
	t.Parallel()
	entries, want := failedMembers(16, func(name string) bool { return shardOf(name, 4) == 0 })
	file := writeMembers(t, entries)
	quiet := func(c *Config) { c.Timing.PushPull = time.Minute } // no periodic asks meanwhile
	a := startWith(t, "a", "127.0.0.1:0", 64, "", nil, func(c *Config) { c.MembersPath = file; quiet(c) })
	bn := startWith(t, "b", "127.0.0.1:0", 64, "", nil, quiet)
	if _, err := bn.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	all := "a=alive b=alive " + strings.Join(want, " ")
	testutil.Eventually(t, 20*time.Second, "b learns every failed member", func() bool { return summary(bn.Members()) == all })
	testutil.Eventually(t, 20*time.Second, "b's ask ends", func() bool { bn.mu.Lock(); defer bn.mu.Unlock(); return !bn.asking })
	bn.mu.Lock()
	next := bn.shards
	bn.mu.Unlock()
	more, sizes, ok := bn.askShards(next)
	if !ok {
		t.Fatal("asking failed")
	}
	if more {
		t.Fatalf("the next ask starts at %d shards, where an answer is cut again (bytes by member and shard: %v)", next, sizes)
	}
}
