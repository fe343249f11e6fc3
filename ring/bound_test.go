package ring

import (
	"fmt"
	"math"
	"testing"
)

// The load bound is documented as a hard cap: claims are granted only while
// a member holds fewer than ceil((1+e) * N*Q/M). assign's greedy pass can
// leave a partition short with only full members left to take it, and the
// fallback then puts the replica on a full member anyway, although an
// assignment within the bound exists (here: Q=4, N=2, M=3, limit 3; loads
// 3, 3, 2 fit, but n17 ends up holding all 4 partitions).
func TestLoadNeverExceedsTheBound(t *testing.T) {
	p := mustCompute(t, PlacementConfig{Partitions: 4, Replicas: 2}, []string{"n17", "n18", "n19"})
	limit := int(math.Ceil((1 + DefaultEpsilon) * float64(4*2) / 3)) // 3
	for _, m := range p.Members() {
		if p.Load(m) > limit {
			t.Errorf("Q=4 N=2 %v: %s holds %d replicas, over the bound %d", p.Members(), m, p.Load(m), limit)
		}
	}
	// More small clusters: consecutive names, Q 4..16, N 2..3, M 3..6.
	bad := 0
	for _, q := range []int{4, 8, 16} {
		for _, n := range []int{2, 3} {
			for m := 3; m <= 6; m++ {
				for base := 0; base < 100; base++ {
					ms := make([]string, m)
					for i := range ms {
						ms[i] = fmt.Sprintf("n%d", base+i+1)
					}
					p := mustCompute(t, PlacementConfig{Partitions: q, Replicas: n}, ms)
					limit := int(math.Ceil((1 + DefaultEpsilon) * float64(q*min(n, m)) / float64(m)))
					for _, mem := range p.Members() {
						if p.Load(mem) > limit {
							bad++
							if bad <= 5 {
								t.Errorf("Q=%d N=%d %v: %s holds %d, over the bound %d", q, n, ms, mem, p.Load(mem), limit)
							}
							break
						}
					}
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d small clusters exceed the load bound", bad)
	}
}
