package ring

import (
	"fmt"
	"testing"
)

func TestValidatePartitions(t *testing.T) {
	for _, q := range []int{1, 2, 1024, 4096, MaxPartitions} {
		if err := ValidatePartitions(q); err != nil {
			t.Errorf("ValidatePartitions(%d) = %v", q, err)
		}
	}
	for _, q := range []int{-4, 0, 3, 1000, MaxPartitions * 2} {
		if err := ValidatePartitions(q); err == nil {
			t.Errorf("ValidatePartitions(%d) accepted", q)
		}
	}
}

func TestPartitionIsInRangeAndSpread(t *testing.T) {
	const q, keys = 64, 64 * 200
	counts := make([]int, q)
	for i := 0; i < keys; i++ {
		p := Partition([]byte(fmt.Sprintf("key:%d", i)), q)
		if p >= q {
			t.Fatalf("partition %d out of range %d", p, q)
		}
		counts[p]++
	}
	for p, n := range counts {
		if n < 100 || n > 300 { // mean 200; a broken hash piles keys up
			t.Fatalf("partition %d holds %d of %d keys", p, n, keys)
		}
	}
	if Partition([]byte("x"), 1) != 0 {
		t.Fatal("Q=1 must map everything to partition 0")
	}
	// Top bits: a key's partition at 2Q is its partition at Q, split in two.
	for i := 0; i < 1000; i++ {
		k := []byte(fmt.Sprint(i))
		if Partition(k, 2*q)/2 != Partition(k, q) {
			t.Fatalf("partition of %q at Q=%d is not a refinement of Q=%d", k, 2*q, q)
		}
	}
}
