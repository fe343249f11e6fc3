// Package crdt holds rumor's mergeable values: causal contexts (version
// vectors), registers kept as dotted version vector sets, PN-counters, the
// Object that carries one of each for a key, and their binary encoding.
//
// It is pure: no I/O, no clocks, no goroutines. Time enters as an argument
// (the coordinator's write time), actor ids are chosen by the caller.
//
// # Registers
//
// A Register is a dotted version vector set (Preguiça et al. 2012; Riak 2.0's
// dvvset): a causal Context (one counter per actor that has written the key)
// and Siblings, each a value tagged with the Dot (actor, counter) of the write
// that made it. Two replicas merge by keeping every sibling the other side
// also holds or has not seen, and joining the contexts: concurrent writes
// survive as siblings, overwritten ones disappear.
//
// Register.Update is the coordinator's write. It drops exactly the siblings
// that the client's context covers, adds the new value with a fresh dot, and
// joins the context. A write "without a context" is an Update whose context
// is the replica's own: it supersedes what this replica holds.
//
// A delete is an Update that adds no sibling: the register keeps only its
// context (the tombstone), so a late write that the delete had seen is
// dropped on merge, while a write concurrent with the delete survives
// (add wins, as in Riak's observed-remove semantics).
//
// # Counters
//
// A Counter is a PN-counter: per actor, the increments and decrements it has
// made. Merge takes the per-actor maximum. A counter is deleted by an
// observed reset: each entry remembers the totals it had when a delete saw
// it, and its value counts only what came after, so increments concurrent
// with a delete are kept and replicas still converge.
//
// # Objects and encoding
//
// An Object holds a Register and a Counter; for a key at most one of them is
// normally live. Merge is component-wise, so an Object is itself a CRDT even
// when a network partition lets one side SET a key while the other INCRs it.
// Encode and Decode give a versioned binary form made of tagged sections;
// Decode rejects corrupt or truncated input with an error wrapping
// ErrCorrupt, never a panic. Contexts have a printable token form
// (Context.Token, ParseToken) that a client can paste back into a write.
//
// All values are immutable once built: methods return new values and never
// modify their receiver or arguments, and results may share byte slices
// with their inputs.
package crdt
