package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

func mustCompute(t testing.TB, cfg PlacementConfig, members []string) *Placement {
	t.Helper()
	p, err := Compute(cfg, members)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlacementIsTheSameWhateverTheMemberOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	cfg := PlacementConfig{Partitions: 256}
	for _, m := range []int{1, 2, 3, 7, 40} {
		ms := names(m)
		want := mustCompute(t, cfg, ms)
		for trial := 0; trial < 5; trial++ {
			shuffled := slices.Clone(ms)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			shuffled = append(shuffled, shuffled[:rng.IntN(len(shuffled)+1)]...) // learned twice
			got := mustCompute(t, cfg, shuffled)
			for part := uint32(0); part < 256; part++ {
				if a, b := want.Replicas(part), got.Replicas(part); !slices.Equal(a, b) {
					t.Fatalf("M=%d partition %d: %v from sorted members, %v from %v", m, part, a, b, shuffled)
				}
			}
		}
	}
}

func TestEveryPartitionHasDistinctReplicasAndARanking(t *testing.T) {
	for _, m := range []int{1, 2, 3, 5, 20} {
		p := mustCompute(t, PlacementConfig{Partitions: 512}, names(m))
		for part := uint32(0); part < 512; part++ {
			reps := p.Replicas(part)
			if len(reps) != min(3, m) {
				t.Fatalf("M=%d partition %d has %d replicas", m, part, len(reps))
			}
			rank := p.Ranking(part)
			if !slices.Equal(rank[:len(reps)], reps) {
				t.Fatalf("ranking %v does not start with the replicas %v", rank, reps)
			}
			sorted := slices.Sorted(slices.Values(rank))
			if !slices.Equal(sorted, p.Members()) {
				t.Fatalf("ranking %v is not every member once", rank)
			}
			// Replicas is shared: appending to it, or changing a ranking,
			// must leave the placement alone.
			before := slices.Clone(p.Replicas((part + 1) % 512))
			_ = append(reps, "intruder")
			rank[0] = "intruder"
			if got := p.Replicas((part + 1) % 512); !slices.Equal(got, before) {
				t.Fatalf("appending to partition %d's replicas changed partition %d's: %v, was %v", part, part+1, got, before)
			}
			if got := p.Replicas(part); !slices.Equal(got, reps) || slices.Contains(got, "intruder") {
				t.Fatalf("changing a ranking changed the replicas: %v", got)
			}
		}
	}
	if _, err := Compute(PlacementConfig{}, nil); err != ErrNoMembers {
		t.Fatalf("no members: %v", err)
	}
	if _, err := Compute(PlacementConfig{Partitions: 100, Replicas: -1, Epsilon: -1}, names(3)); err == nil {
		t.Fatal("bad config accepted")
	}
}

// TestBalanceAndMovement checks the placement goals for 3 to 100 members
// at N=3, at the default Q (and at 8192, the least Q that meets them): the
// busiest member holds at most 1.1x the mean, and a join or a leave moves
// at most 1.15x the ideal number of replicas (the joining or leaving
// member's fair share, N*Q/M). At Q=4096 a join can move 1.22x (see the
// Placement doc).
func TestBalanceAndMovement(t *testing.T) {
	for _, q := range []int{DefaultPartitions, 8192} {
		t.Run(fmt.Sprint("Q=", q), func(t *testing.T) { checkBalanceAndMovement(t, PlacementConfig{Partitions: q}) })
	}
}

func checkBalanceAndMovement(t *testing.T, cfg PlacementConfig) {
	const n, maxM = 3, 100
	q := cfg.Partitions
	prev := mustCompute(t, cfg, names(3))
	worstBalance, worstJoin, worstLeave := 0.0, 0.0, 0.0
	for m := 3; m <= maxM; m++ {
		p := prev
		if m > 3 {
			p = mustCompute(t, cfg, names(m))
			ideal := float64(n*q) / float64(m)
			join, leave := float64(Moves(prev, p))/ideal, float64(Moves(p, prev))/ideal
			worstJoin, worstLeave = max(worstJoin, join), max(worstLeave, leave)
			if join > 1.15 || leave > 1.15 {
				t.Errorf("M=%d: a join moves %.3fx the ideal, a leave %.3fx (goal <= 1.15)", m, join, leave)
			}
			if m%10 == 0 { // a member other than the newest leaves
				without := append(names(m)[:m/2], names(m)[m/2+1:]...)
				if r := float64(Moves(p, mustCompute(t, cfg, without))) / ideal; r > 1.15 {
					t.Errorf("M=%d: n%d leaving moves %.3fx the ideal", m, m/2+1, r)
				}
			}
		}
		b := p.MaxOverMean()
		worstBalance = max(worstBalance, b)
		if b > 1.1 {
			t.Errorf("M=%d: busiest member holds %.3fx the mean (goal <= 1.1)", m, b)
		}
		prev = p
	}
	t.Logf("3..%d members, Q=%d, N=%d, e=%v: worst max/mean %.3f, worst join %.3fx ideal, worst leave %.3fx ideal",
		maxM, q, n, DefaultEpsilon, worstBalance, worstJoin, worstLeave)
}

func TestMovesCountsCopies(t *testing.T) {
	a := mustCompute(t, PlacementConfig{Partitions: 64}, names(3))
	if got := Moves(a, a); got != 0 {
		t.Fatalf("Moves(a, a) = %d", got)
	}
	// From 3 members to 1 other: every replica moves.
	b := mustCompute(t, PlacementConfig{Partitions: 64, Replicas: 1}, []string{"x"})
	a1 := mustCompute(t, PlacementConfig{Partitions: 64, Replicas: 1}, names(3))
	if got := Moves(a1, b); got != 64 {
		t.Fatalf("moving everything to a new member: %d, want 64", got)
	}
}

// BenchmarkCompute reports the time to compute a placement, its balance
// (busiest member over the mean) and what one more member would move
// (over the ideal), for several Q and member counts.
func BenchmarkCompute(b *testing.B) {
	for _, q := range []int{4096, 16384} {
		for _, m := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("Q=%d/members=%d", q, m), func(b *testing.B) {
				cfg := PlacementConfig{Partitions: q}
				ms := names(m)
				var p *Placement
				for b.Loop() {
					p = mustCompute(b, cfg, ms)
				}
				b.ReportMetric(p.MaxOverMean(), "max/mean")
				next := mustCompute(b, cfg, names(m+1))
				b.ReportMetric(float64(Moves(p, next))/(float64(3*q)/float64(m+1)), "join-moves/ideal")
			})
		}
	}
}

// BenchmarkRanking is the per-request cost of a partition's full ranking
// (replicas, then fallbacks), which sloppy quorum asks for on every
// request.
func BenchmarkRanking(b *testing.B) {
	for _, m := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("members=%d", m), func(b *testing.B) {
			p := mustCompute(b, PlacementConfig{Partitions: 4096}, names(m))
			b.ReportAllocs()
			var part uint32
			for b.Loop() {
				p.Ranking(part % 4096)
				part++
			}
		})
	}
}
