package store

import (
	"bytes"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rumor-kv/rumor/crdt"
)

// objectMerger is pebble's merge operator for rumor objects: a merge
// operand is an encoded object, and operands combine by crdt.Merge. Since
// that merge is commutative, associative and idempotent, operands may be
// combined in any order and any grouping, which is what pebble does at
// read and compaction time. It lets a replica store an object sent by a
// coordinator without reading what it holds first (Store.Merge).
//
// The name is stored in the data directory; changing it makes pebble
// refuse to open directories written with the old one.
var objectMerger = &pebble.Merger{
	Name: "rumor.crdt.object.v1",
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &valueMerger{}
		return m, m.add(value)
	},
}

type valueMerger struct{ obj crdt.Object }

// add merges one operand; the caller keeps ownership of value, so it is
// copied before decoding (decoded values alias their input).
func (m *valueMerger) add(value []byte) error {
	o, err := crdt.Decode(bytes.Clone(value))
	if err != nil {
		return err
	}
	m.obj = crdt.Merge(m.obj, o)
	return nil
}

func (m *valueMerger) MergeNewer(value []byte) error { return m.add(value) }
func (m *valueMerger) MergeOlder(value []byte) error { return m.add(value) }

func (m *valueMerger) Finish(bool) ([]byte, io.Closer, error) { return m.obj.Encode(), nil, nil }
