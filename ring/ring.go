// Package ring places keys: it cuts the key space into Q fixed partitions
// (a power of two, fixed when the cluster is created) and, in the cluster,
// ranks members for each partition. It is pure: no I/O, no clocks.
//
// partition(key) is the top log2(Q) bits of xxhash64(key), so one partition
// is a contiguous slice of the hash space and Q can be reasoned about as
// "the first bits of the hash".
package ring

import (
	"fmt"
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// MaxPartitions is the largest Q; store keys spend two bytes on the partition.
const MaxPartitions = 1 << 16

// DefaultPartitions is Q when none is configured. It was chosen by the
// placement goals (see Placement): at 16384 partitions bounded-load
// rendezvous keeps the busiest of 3 to 100 members under 1.1x the mean and
// a join or a leave under 1.15x the ideal movement; at 4096 a join can
// move 1.22x.
const DefaultPartitions = 16384

// ValidatePartitions reports whether q can be a cluster's partition count.
func ValidatePartitions(q int) error {
	if q < 1 || q > MaxPartitions || q&(q-1) != 0 {
		return fmt.Errorf("ring: partitions must be a power of two between 1 and %d, not %d", MaxPartitions, q)
	}
	return nil
}

// Partition returns the partition of key among q (a valid partition count).
func Partition(key []byte, q int) uint32 {
	shift := 64 - bits.TrailingZeros(uint(q))
	if shift == 64 {
		return 0
	}
	return uint32(xxhash.Sum64(key) >> shift)
}
