package node

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/store"
)

// FuzzHandlePeer sends arbitrary peer calls to a node, as a buggy or
// hostile peer could: a method and its arguments, split on NUL. Whatever
// arrives, the node must not panic, must refuse unknown methods and wrong
// argument counts, must keep what it stored decodable, and must go on
// serving: after every call a write and a read of another key succeed.
func FuzzHandlePeer(f *testing.F) {
	obj := crdt.Object{Reg: crdt.Register{}.Update(7, crdt.Context{}, []byte("v"), false, 1)}
	tok := obj.Reg.Context.Token()
	cnt, _ := crdt.Counter{}.Add(9, 3)
	call := func(method string, args ...string) []byte {
		if len(args) == 0 {
			return []byte(method)
		}
		return []byte(method + "\x00" + joinNUL(args))
	}
	for _, seed := range [][]byte{
		call("ping"),
		call("get", "k"),
		call("merge", "k", string(obj.Encode())),
		call("hint", "k", string(obj.Encode()), "b"),
		call("hint", "k", string(obj.Encode()), "a"),
		call("put", "k", "v", "-", "1", "0"),
		call("put", "k", "v", tok, "2", "1"),
		call("del", "k", "-", "-", "1", "0"),
		call("del", "k", tok, string(crdt.Object{Cnt: cnt}.Encode()), "1", "0"),
		call("del", "k", "-", string(obj.Encode()), "1", "0"), // a register where the counter goes
		call("del", "k", "-", "not an object", "1", "0"),
		call("incr", "c", "5", "1", "0"),
		call("incr", "c", "9223372036854775807", "1", "0"),
		call("incr", "c", "-9223372036854775808", "1", "0"),
		// hostile
		call("put", "k", "v", "-", "0", "0"),
		call("put", "k", "v", "-", "-1", "0"),
		call("put", "k", "v", "-", "99999999999999999999", "0"),
		call("put", "k", "v", "-", "1", "2"),
		call("put", "k", "v", "not a token", "1", "0"),
		call("merge", "k", "\x01\x02garbage"),
		call("merge", "k", ""),
		call("incr", "c", "1e3", "1", "0"),
		call("get"),
		call("nope", "k"),
		[]byte(""),
		[]byte("\x00\x00\x00"),
	} {
		f.Add(seed)
	}
	tc := newTestClusterWith(f, []string{"a", "b"}, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 2, 1, 1
		cfg.Timeout = 200 * time.Millisecond
	})
	a := tc.nodes["a"]
	canary := 0
	f.Fuzz(func(t *testing.T, in []byte) {
		parts := bytes.Split(in, []byte{0})
		method, args := string(parts[0]), parts[1:]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := a.HandlePeer(ctx, method, args)
		if need, known := peerArgs[method]; (!known || len(args) != need) && err == nil {
			t.Fatalf("%q with %d arguments was accepted", method, len(args))
		}
		if method == "merge" && err == nil {
			// What was merged reads back as a valid object.
			res, err := a.HandlePeer(ctx, "get", args[:1])
			if err != nil || len(res) != 1 {
				t.Fatalf("get after merge: %q, %v", res, err)
			}
			if res[0] != nil {
				if _, err := crdt.Decode(res[0]); err != nil {
					t.Fatalf("stored object does not decode: %v", err)
				}
			}
		}
		// The node still serves.
		canary++
		key, want := []byte("canary"), strconv.Itoa(canary)
		if _, err := a.HandlePeer(ctx, "put", [][]byte{key, []byte(want), []byte("-"), []byte("1"), []byte("0")}); err != nil {
			t.Fatalf("put after %q: %v", in, err)
		}
		res, err := a.HandlePeer(ctx, "get", [][]byte{key})
		if err != nil || len(res) != 1 || res[0] == nil {
			t.Fatalf("get after %q: %q, %v", in, res, err)
		}
		o, err := crdt.Decode(res[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := o.Reg.Newest(); !ok || string(got.Value) != want {
			t.Fatalf("canary = %q after %q, want %s", got.Value, in, want)
		}
	})
}

func joinNUL(args []string) string {
	var b []byte
	for i, a := range args {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, a...)
	}
	return string(b)
}
