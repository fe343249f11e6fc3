package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rumor-kv/rumor/crdt"
)

// ErrHintsFull is returned by a hinted write that would need a new hint
// record while the store holds Options.MaxHints of them.
var ErrHintsFull = errors.New("store: hint storage is full")

// Hint names an object this node holds for another node.
type Hint struct {
	Target    string // the intended node's name
	Partition uint32
	Key       []byte
	Seq       uint64 // changes every time the hint is (re)written
}

const (
	hintPrefix = 0x02
	// maxTargetLen is the longest target name: its length is one byte of
	// the hint key, so that no target's records are a prefix of another's.
	maxTargetLen = 255
	hintVersion  = 1
	hintValueLen = 1 + 8
)

func checkTarget(target string) error {
	if len(target) > maxTargetLen {
		return fmt.Errorf("store: hint target name is %d bytes, longer than %d", len(target), maxTargetLen)
	}
	return nil
}

// appendHintTarget appends the prefix of target's hint records.
func appendHintTarget(buf []byte, target string) []byte {
	buf = append(buf, hintPrefix, byte(len(target)))
	return append(buf, target...)
}

// hintKey appends the store key of the hint for (target, p, key). The
// target is at most maxTargetLen bytes.
func hintKey(buf []byte, target string, p uint32, key []byte) []byte {
	buf = appendHintTarget(buf, target)
	buf = append(buf, byte(p>>8), byte(p))
	return append(buf, key...)
}

// parseHintKey splits a hint record's store key. The slices alias k.
func parseHintKey(k []byte) (target []byte, p uint32, key []byte, ok bool) {
	if len(k) < 2 || k[0] != hintPrefix || len(k) < 2+int(k[1])+2 {
		return nil, 0, nil, false
	}
	n := int(k[1])
	target = k[2 : 2+n]
	p = uint32(binary.BigEndian.Uint16(k[2+n:]))
	return target, p, k[2+n+2:], true
}

func appendHintValue(buf []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, hintVersion), seq)
}

func parseHintValue(v []byte) (seq uint64, ok bool) {
	if len(v) != hintValueLen || v[0] != hintVersion {
		return 0, false
	}
	return binary.BigEndian.Uint64(v[1:]), true
}

// loadHints counts the hint records per target and seeds the Seq counter
// past every Seq on disk and past now in nanoseconds, so that a Seq is not
// handed out twice even for a hint deleted before a restart (unless the
// clock went back).
func (s *Store) loadHints(now time.Time) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{hintPrefix}, UpperBound: []byte{hintPrefix + 1}})
	if err != nil {
		return fmt.Errorf("store: read hints: %w", err)
	}
	counts := map[string]int{}
	total := 0
	maxSeq := uint64(max(now.UnixNano(), 0))
	// Records are sorted by target: count runs, to make one string per
	// target rather than one per record.
	var run []byte
	n := 0
	for it.First(); it.Valid(); it.Next() {
		target, _, _, ok := parseHintKey(it.Key())
		seq, vok := parseHintValue(it.Value())
		if !ok || !vok {
			it.Close()
			return fmt.Errorf("store: corrupt hint record %q = %x", it.Key(), it.Value())
		}
		maxSeq = max(maxSeq, seq)
		total++
		if n > 0 && string(target) == string(run) {
			n++
			continue
		}
		if n > 0 {
			counts[string(run)] = n
		}
		run, n = append(run[:0], target...), 1
	}
	if n > 0 {
		counts[string(run)] = n
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: read hints: %w", err)
	}
	s.hintSeq.Store(maxSeq)
	s.mu.Lock()
	s.mu.hints, s.mu.hintTotal = counts, total
	s.mu.Unlock()
	return nil
}

// reserveHint counts a hint record for target that is about to be
// created, or returns ErrHintsFull. The caller holds the stripe lock of the
// record's object key and calls releaseHint if the record is not written.
func (s *Store) reserveHint(target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.hintTotal >= s.maxHints {
		return ErrHintsFull
	}
	s.mu.hints[target]++
	s.mu.hintTotal++
	return nil
}

// reserveNewHint counts the hint record hk for target if it does not exist
// yet (reserveHint), and reports whether it did: the caller releases that
// reservation if it then does not write the record. The caller holds the
// stripe lock of the record's object key, which orders every write and
// delete of hk, so whether it exists cannot change meanwhile.
func (s *Store) reserveNewHint(hk []byte, target string) (reserved bool, err error) {
	_, exists, err := s.read(hk)
	if err != nil || exists {
		return false, err
	}
	if err := s.reserveHint(target); err != nil {
		return false, err
	}
	return true, nil
}

// releaseHint uncounts a hint record for target that was deleted or was
// reserved and not written.
func (s *Store) releaseHint(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.mu.hints[target] - 1
	if n < 0 || s.mu.hintTotal < 1 {
		panic(fmt.Sprintf("store: released a hint for %q that was not counted", target))
	}
	if n == 0 {
		delete(s.mu.hints, target)
	} else {
		s.mu.hints[target] = n
	}
	s.mu.hintTotal--
}

// UpdateHinted is UpdateDeferred that, when target != "", also records in
// the same batch a hint (target, p, key) with a fresh Seq. If there is no
// hint for (target, p, key) yet and the store already holds MaxHints hints,
// nothing is written and it returns ErrHintsFull (fn is not applied). A
// target longer than 255 bytes is an error and writes nothing. With
// target == "" it is exactly UpdateDeferred.
func (s *Store) UpdateHinted(p uint32, key []byte, target string, fn func(cur crdt.Object, found bool) (crdt.Object, error), deferSync func(wait func() error)) (crdt.Object, error) {
	return s.update(p, key, target, fn, deferSync)
}

// UpdateEncoded is UpdateHinted for a caller that sends the stored object
// on (a coordinator, to the other replicas): it returns the object's
// encoding, as stored, instead of the object, which saves encoding it a
// second time (the encoding is shared with the store's cache: read only),
// and returns the wait for the write's fsync instead of passing it to a
// callback: nil without Options.Sync; with it, the caller must call wait
// exactly once and must not count the write as stored before it returns
// nil.
func (s *Store) UpdateEncoded(p uint32, key []byte, target string, fn func(cur crdt.Object, found bool) (crdt.Object, error)) (enc []byte, wait func() error, err error) {
	_, enc, b, err := s.apply(p, key, target, fn)
	if err != nil {
		return nil, nil, err
	}
	return enc, s.batchWait(b), nil
}

// MergeHinted merges obj into key's object and records a hint for target,
// as a node standing in for target does with an object sent to it. Like
// Update, with Options.Sync both are durable when it returns.
func (s *Store) MergeHinted(p uint32, key []byte, obj crdt.Object, target string) (crdt.Object, error) {
	return s.UpdateHinted(p, key, target, func(cur crdt.Object, _ bool) (crdt.Object, error) {
		return crdt.Merge(cur, obj), nil
	}, nil)
}

// AddHint records a hint (target, p, key) for the object the store holds
// for key, with a fresh Seq: as a coordinator does for a replica its copy
// did not reach when no other node stood in for it (the object here is
// its own copy, which a handoff then merges into target's). A hint
// already there is rewritten, so a delivery in flight does not delete it.
// ErrHintsFull as UpdateHinted. Like DeleteHint it is not fsynced: a crash
// may lose it, and the copy then reaches target by read repair or
// anti-entropy.
func (s *Store) AddHint(p uint32, key []byte, target string) error {
	if err := checkTarget(target); err != nil {
		return err
	}
	if target == "" {
		return errors.New("store: a hint needs a target")
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	k := objectKey(make([]byte, 0, 3+len(key)), p, key)
	hk := hintKey(make([]byte, 0, 5+len(target)+len(key)), target, p, key)
	mu := &s.locks[stripe(k)]
	mu.Lock()
	defer mu.Unlock()
	reserved, err := s.reserveNewHint(hk, target)
	if err != nil {
		return err
	}
	if err := s.db.Set(hk, appendHintValue(make([]byte, 0, hintValueLen), s.hintSeq.Add(1)), pebble.NoSync); err != nil {
		if reserved {
			s.releaseHint(target)
		}
		return fmt.Errorf("store: add hint: %w", err)
	}
	s.written.Add(uint64(len(hk) + hintValueLen))
	return nil
}

// Hints returns the number of hint records per target (targets with none
// are absent). It reads a count kept in memory.
func (s *Store) Hints() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.mu.hints)
}

// HintCount returns the number of hint records.
func (s *Store) HintCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hintTotal
}

// ScanHints calls fn for up to limit hints for target (limit <= 0: all), in
// key order (partition, then key), starting after the hint after (nil: from
// the start; its Target must be target, its Seq is ignored). It reads a
// snapshot taken when it starts, so fn may call DeleteHint and
// UpdateHinted. Hint.Key is only valid during the call. ScanHints stops at
// fn's first error and returns it.
func (s *Store) ScanHints(target string, after *Hint, limit int, fn func(h Hint) error) error {
	if err := checkTarget(target); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	lo := appendHintTarget(nil, target)
	// hi is the least key above every key that starts with lo: lo with its
	// last byte that is not 0xff incremented (lo[0] is hintPrefix). The
	// length byte keeps other targets' records out of [lo, hi).
	hi := append([]byte(nil), lo...)
	for i := len(hi) - 1; ; i-- {
		if hi[i] != 0xff {
			hi = append(hi[:i], hi[i]+1)
			break
		}
	}
	if after != nil {
		if after.Target != target {
			return errors.New("store: ScanHints after a hint for another target")
		}
		// The least key greater than after's.
		lo = append(hintKey(nil, target, after.Partition, after.Key), 0)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("store: scan hints: %w", err)
	}
	n := 0
	for it.First(); it.Valid() && (limit <= 0 || n < limit); it.Next() {
		_, p, key, ok := parseHintKey(it.Key())
		seq, vok := parseHintValue(it.Value())
		if !ok || !vok {
			it.Close()
			return fmt.Errorf("store: corrupt hint record %q = %x", it.Key(), it.Value())
		}
		if err := fn(Hint{Target: target, Partition: p, Key: key, Seq: seq}); err != nil {
			it.Close()
			return err
		}
		n++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: scan hints: %w", err)
	}
	return nil
}

// DeleteHint deletes the hint if its record still has h.Seq, and reports
// whether it deleted. A hint rewritten after h was read stands for a newer
// write that must still be delivered, and is kept. DeleteHint takes the
// stripe lock of the hint's object key, so it is ordered with the hinted
// writes of that key.
//
// The delete is not fsynced (the next synced write, the periodic WAL sync
// or Close makes it durable): a crash may bring the hint back, and the
// object is then delivered again, which merging makes harmless.
func (s *Store) DeleteHint(h Hint) (bool, error) {
	if err := checkTarget(h.Target); err != nil {
		return false, err
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	k := objectKey(make([]byte, 0, 3+len(h.Key)), h.Partition, h.Key)
	hk := hintKey(make([]byte, 0, 5+len(h.Target)+len(h.Key)), h.Target, h.Partition, h.Key)
	mu := &s.locks[stripe(k)]
	mu.Lock()
	defer mu.Unlock()
	v, found, err := s.read(hk)
	if err != nil || !found {
		return false, err
	}
	seq, ok := parseHintValue(v)
	if !ok {
		return false, fmt.Errorf("store: corrupt hint record %q = %x", hk, v)
	}
	if seq != h.Seq {
		return false, nil
	}
	if err := s.db.Delete(hk, pebble.NoSync); err != nil {
		return false, fmt.Errorf("store: delete hint: %w", err)
	}
	s.written.Add(uint64(len(hk)))
	s.releaseHint(h.Target)
	return true, nil
}
