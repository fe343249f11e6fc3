package ring

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Placement says which members hold each partition's replicas. It is
// computed from the member list alone, so every node that knows the same
// members computes the same placement, whatever order it learned them in:
// there is no leader and no token to gossip.
//
// The replicas of partition p are chosen by rendezvous (highest random
// weight) hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam
// 2016): each member's claim on p is weighted by a hash of (p, member), and
// claims are granted strongest first while p needs replicas and the member
// holds fewer than ceil((1+Epsilon) * N*Q/M). Plain rendezvous moves only
// the replicas a join or a leave must move but is unbalanced past about 20
// members; the bound keeps the busiest member near the mean. Granting
// claims in weight order (rather than walking partitions in index order,
// as the paper's sequential process does) means the bound only ever turns
// away a member's weakest claims, so a change of membership disturbs few
// partitions beyond the ones it must move.
//
// How Q, N and Epsilon trade balance against movement (worst case over 3
// to 100 members, N=3; TestBalanceAndMovement, BenchmarkCompute):
//
//	Q=4096,  e=0.095: busiest 1.102x mean, a join or leave moves 1.225x the ideal
//	Q=8192,  e=0.09:  busiest 1.094x mean, moves 1.135x the ideal
//	Q=16384, e=0.09:  busiest 1.092x mean, moves 1.090x the ideal
//
// The ideal is the joining or leaving member's fair share, N*Q/M. With more
// partitions each member's share varies less, so the bound binds on fewer
// members and fewer weak claims change hands.
//
// A Placement is immutable and safe for concurrent use.
type Placement struct {
	cfg     PlacementConfig
	members []string // sorted
	hashes  []uint64 // xxhash64 of each member, same order
	owners  []int32  // Q*n member indexes, partition by partition, rank order
	names   []string // members[owners[i]]: what Replicas returns, shared
	n       int      // replicas per partition: min(N, M)
	loads   []int
}

// PlacementConfig configures Compute. Zero fields mean their defaults.
type PlacementConfig struct {
	// Partitions is Q, a power of two. Default DefaultPartitions.
	Partitions int
	// Replicas is N. Default 3.
	Replicas int
	// Epsilon bounds the busiest member's load to (1+Epsilon) times the
	// mean. Smaller is more even but moves more replicas on a join or a
	// leave. Default DefaultEpsilon.
	Epsilon float64
}

// DefaultEpsilon is the load bound's slack; see PlacementConfig.Epsilon.
const DefaultEpsilon = 0.09

// Validate reports every problem at once.
func (c PlacementConfig) Validate() error {
	var errs []error
	if c.Partitions != 0 {
		if err := ValidatePartitions(c.Partitions); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("ring: replicas must be positive, not %d", c.Replicas))
	}
	if c.Epsilon < 0 || math.IsNaN(c.Epsilon) || math.IsInf(c.Epsilon, 0) {
		errs = append(errs, fmt.Errorf("ring: epsilon must be a non-negative number, not %v", c.Epsilon))
	}
	return errors.Join(errs...)
}

func (c PlacementConfig) withDefaults() PlacementConfig {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.Epsilon == 0 {
		c.Epsilon = DefaultEpsilon
	}
	return c
}

// ErrNoMembers is returned by Compute for an empty member list.
var ErrNoMembers = errors.New("ring: no members")

// Compute places every partition's replicas on members (their unique ids,
// in any order; duplicates are ignored).
func Compute(cfg PlacementConfig, members []string) (*Placement, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(ms) == 0 {
		return nil, ErrNoMembers
	}
	m := len(ms)
	p := &Placement{cfg: cfg, members: ms, n: min(cfg.Replicas, m), loads: make([]int, m)}
	p.hashes = make([]uint64, m)
	for i, id := range ms {
		p.hashes[i] = xxhash.Sum64String(id)
	}
	q := cfg.Partitions
	mean := float64(q*p.n) / float64(m)
	limit := int(math.Ceil((1 + cfg.Epsilon) * mean))
	p.owners = make([]int32, q*p.n)
	p.assign(limit)
	p.names = make([]string, len(p.owners))
	for i, j := range p.owners {
		p.names[i] = ms[j]
	}
	return p, nil
}

// assign fills every partition with n members, strongest claims first:
// every (partition, member) pair is a claim weighted by rendezvous, and
// claims are granted in falling weight while the partition needs replicas
// and the member holds fewer than limit. The load bound therefore only
// ever refuses a member's weakest claims, which go to the partition's next
// candidates; a join or a leave moves the replicas it must, plus the few
// weak claims at the margin that the changed loads let in or push out.
// Only each partition's top n+candidateSlack members are considered at
// first; a partition left short (those candidates all full) then takes its
// heaviest members with room.
func (p *Placement) assign(limit int) {
	m, q, n := len(p.members), p.cfg.Partitions, p.n
	k := min(m, n+candidateSlack)
	claims := make([]claim, 0, q*k)
	for part := 0; part < q; part++ {
		claims = p.topClaims(claims, uint32(part), k)
	}
	slices.SortFunc(claims, claim.compare)
	filled := make([]int, q)
	for _, c := range claims {
		if filled[c.part] < n && p.loads[c.member] < limit {
			p.owners[int(c.part)*n+filled[c.part]] = c.member
			filled[c.part]++
			p.loads[c.member]++
		}
	}
	for part := 0; part < q; part++ {
		for filled[part] < n {
			owners := p.owners[part*n : part*n+filled[part]]
			best, bestFree := claim{member: -1}, claim{member: -1}
			for i, h := range p.hashes {
				if slices.Contains(owners, int32(i)) {
					continue
				}
				c := claim{w: weight(uint32(part), h), part: int32(part), member: int32(i)}
				if best.member < 0 || c.compare(best) < 0 {
					best = c
				}
				if p.loads[i] < limit && (bestFree.member < 0 || c.compare(bestFree) < 0) {
					bestFree = c
				}
			}
			if bestFree.member >= 0 {
				best = bestFree
			} else if y, ok := p.swapIn(part, filled, limit); ok {
				best.member = y // full, but it gave a slot elsewhere to one that is not
			}
			p.owners[part*n+filled[part]] = best.member
			filled[part]++
			p.loads[best.member]++
		}
		p.sortOwners(part)
	}
}

// sortOwners puts part's replicas in preference order: rendezvous order.
func (p *Placement) sortOwners(part int) {
	owners := p.owners[part*p.n : (part+1)*p.n]
	slices.SortFunc(owners, func(a, b int32) int {
		return claim{w: weight(uint32(part), p.hashes[a]), member: a}.compare(claim{w: weight(uint32(part), p.hashes[b]), member: b})
	})
}

// swapIn makes room for part, which lacks a replica while every member
// that does not hold it is full (the greedy pass can end so when Q is
// small): a member x below the limit (so one of part's owners) takes the
// slot of a full member y in another partition that x does not hold, and
// y is returned to fill part. y's load is unchanged in the end, x's grows
// by one, and the bound holds. Deterministic: the first such x, partition
// and y, in member and partition order. False if there is none.
func (p *Placement) swapIn(part int, filled []int, limit int) (int32, bool) {
	n := p.n
	owners := p.owners[part*n : part*n+filled[part]]
	for x := range p.hashes {
		if p.loads[x] >= limit {
			continue
		}
		for p2 := range filled {
			o2 := p.owners[p2*n : p2*n+filled[p2]]
			if p2 == part || slices.Contains(o2, int32(x)) {
				continue
			}
			for j, y := range o2 {
				if !slices.Contains(owners, y) {
					o2[j] = int32(x)
					p.loads[x]++
					p.loads[y]--
					if p2 < part { // already in preference order: keep it so
						p.sortOwners(p2)
					}
					return y, true
				}
			}
		}
	}
	return -1, false
}

// candidateSlack is how many members beyond N each partition first
// considers in assign.
const candidateSlack = 8

// A claim is member's rendezvous weight for part.
type claim struct {
	w      uint64
	part   int32
	member int32
}

// compare orders claims by falling weight, ties broken by partition and
// member so that the order is total and the same on every node.
func (c claim) compare(o claim) int {
	switch {
	case c.w > o.w:
		return -1
	case c.w < o.w:
		return 1
	case c.part != o.part:
		return int(c.part - o.part)
	}
	return int(c.member - o.member)
}

// topClaims appends part's k strongest claims to dst (by insertion into a
// k-slot window: one comparison for most members).
func (p *Placement) topClaims(dst []claim, part uint32, k int) []claim {
	base := len(dst)
	for i, h := range p.hashes {
		c := claim{w: weight(part, h), part: int32(part), member: int32(i)}
		top := dst[base:]
		if len(top) == k && c.compare(top[k-1]) >= 0 {
			continue
		}
		if len(top) < k {
			dst = append(dst, c)
		} else {
			dst[len(dst)-1] = c
		}
		for j := len(dst) - 1; j > base && dst[j].compare(dst[j-1]) < 0; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	return dst
}

// weight is the rendezvous weight of a member (by its hash) for a
// partition: a 64-bit mix of both, never 0 (0 marks "taken" in Compute).
func weight(part uint32, member uint64) uint64 {
	x := member ^ (uint64(part)+1)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x | 1
}

// Members returns the members, sorted. The slice must not be modified.
func (p *Placement) Members() []string { return p.members }

// Partitions is Q.
func (p *Placement) Partitions() int { return p.cfg.Partitions }

// Replicas returns the members holding partition part, in preference
// order: min(N, M) of them. The slice is the placement's own (a request
// asks for it, and a copy each was an allocation a request): it must not
// be modified. Its capacity ends with it, so appending to it copies.
func (p *Placement) Replicas(part uint32) []string {
	lo, hi := int(part)*p.n, (int(part)+1)*p.n
	return p.names[lo:hi:hi]
}

// Ranking returns every member in the order a write of partition part
// tries them: its replicas first, then the others by falling rendezvous
// weight (the fallbacks that stand in for unreachable replicas).
func (p *Placement) Ranking(part uint32) []string {
	out := append(make([]string, 0, len(p.members)), p.Replicas(part)...)
	rest := make([]int, 0, len(p.members)-len(out))
	for i := range p.members {
		if !slices.Contains(p.owners[int(part)*p.n:(int(part)+1)*p.n], int32(i)) {
			rest = append(rest, i)
		}
	}
	slices.SortFunc(rest, func(a, b int) int {
		return claim{w: weight(part, p.hashes[a]), member: int32(a)}.compare(claim{w: weight(part, p.hashes[b]), member: int32(b)})
	})
	for _, i := range rest {
		out = append(out, p.members[i])
	}
	return out
}

// Load returns how many replicas member holds (0 for a non-member).
func (p *Placement) Load(member string) int {
	if i, ok := slices.BinarySearch(p.members, member); ok {
		return p.loads[i]
	}
	return 0
}

// MaxOverMean is the busiest member's load over the mean load.
func (p *Placement) MaxOverMean() float64 {
	mean := float64(p.cfg.Partitions*p.n) / float64(len(p.members))
	return float64(slices.Max(p.loads)) / mean
}

// Moves counts the replicas that are placed on a member in b but were not
// on that member in a: what a change of membership from a to b must copy.
// Both must have the same partition count.
func Moves(a, b *Placement) int {
	// b's member indexes in a's numbering (-1: not a member of a).
	inA := make([]int32, len(b.members))
	for i, m := range b.members {
		j, ok := slices.BinarySearch(a.members, m)
		inA[i] = int32(j)
		if !ok {
			inA[i] = -1
		}
	}
	moved := 0
	for part := 0; part < b.cfg.Partitions; part++ {
		old := a.owners[part*a.n : (part+1)*a.n]
		for _, i := range b.owners[part*b.n : (part+1)*b.n] {
			if inA[i] < 0 || !slices.Contains(old, inA[i]) {
				moved++
			}
		}
	}
	return moved
}
