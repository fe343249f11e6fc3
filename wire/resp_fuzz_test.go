package wire

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"testing"
)

// respFuzzLimits are small enough for the fuzzer to reach every limit.
var respFuzzLimits = Limits{MaxArgs: 4, MaxBulk: 16, MaxInline: 32, MaxRequest: 40}

// FuzzParseCommand checks, under the default and small limits, that
// ParseCommand never panics and keeps 0 <= n <= len(buf); that every
// command it returns respects the limits and survives re-encoding as
// multibulk; and that a Reader fed the same bytes in random chunks returns
// the same commands and ends with the same error as parsing the whole
// buffer.
func FuzzParseCommand(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"))
	f.Add([]byte("SET greeting \"hello world\"\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []Limits{{}, respFuzzLimits} {
			cmds, end := respParseAll(t, data, lim)
			respCheckReader(t, data, lim, cmds, end)
		}
	})
}

// respParseAll parses data command by command with ParseCommand, checking
// each result. It returns the non-empty commands and how the stream ends:
// the parse error, io.ErrUnexpectedEOF for a partial command, or io.EOF.
func respParseAll(t *testing.T, data []byte, lim Limits) ([][][]byte, error) {
	full := lim.WithDefaults()
	var cmds [][][]byte
	rest := data
	for {
		args, n, err := ParseCommand(rest, lim, nil)
		if n < 0 || n > len(rest) {
			t.Fatalf("ParseCommand(%q) n = %d, len %d", rest, n, len(rest))
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseCommand(%q): error %v is not a *ProtocolError", rest, err)
			}
			if n != 0 || args != nil {
				t.Fatalf("ParseCommand(%q): error with n = %d, args %q", rest, n, args)
			}
			return cmds, err
		}
		if n == 0 {
			if args != nil {
				t.Fatalf("ParseCommand(%q): incomplete with args %q", rest, args)
			}
			if len(rest) == 0 {
				return cmds, io.EOF
			}
			return cmds, io.ErrUnexpectedEOF
		}
		if args != nil {
			respCheckCommand(t, rest[:n], args, lim, full)
			cmds = append(cmds, respCopyArgs(args))
		}
		rest = rest[n:]
	}
}

func respCheckCommand(t *testing.T, in []byte, args [][]byte, lim, full Limits) {
	if len(args) == 0 || len(args) > full.MaxArgs {
		t.Fatalf("ParseCommand(%q): %d args, max %d", in, len(args), full.MaxArgs)
	}
	total := 0
	for _, a := range args {
		if len(a) > full.MaxBulk {
			t.Fatalf("ParseCommand(%q): arg of %d bytes, max %d", in, len(a), full.MaxBulk)
		}
		total += len(a)
	}
	if total > full.MaxRequest {
		t.Fatalf("ParseCommand(%q): %d bytes of args, max %d", in, total, full.MaxRequest)
	}
	// Re-encoded as multibulk, the arguments parse back unchanged; and as
	// multibulk syntax is strict, a multibulk command is its own encoding.
	enc := respMultibulk(args...)
	if in[0] == '*' && !bytes.Equal(in, enc) {
		t.Fatalf("ParseCommand(%q) = %q, which encodes as %q", in, args, enc)
	}
	again, n, err := ParseCommand(enc, lim, nil)
	if err != nil || n != len(enc) || !respEqualArgs(again, args) {
		t.Fatalf("ParseCommand(%q) = %q; re-encoded %q parses to %q, %d, %v", in, args, enc, again, n, err)
	}

	// Parsing into a used argsBuf gives the same arguments.
	junk := [][]byte{[]byte("junk"), nil, []byte("x")}
	reused, n, err := ParseCommand(in, lim, junk)
	if err != nil || n != len(in) || !respEqualArgs(reused, args) {
		t.Fatalf("ParseCommand(%q) with argsBuf = %q, %d, %v; want %q", in, reused, n, err, args)
	}
}

// respChunkReader returns data in random-sized pieces, sometimes none, and
// sometimes io.EOF with the last piece.
type respChunkReader struct {
	data     []byte
	rng      *rand.Rand
	maxChunk int
}

func (r *respChunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.rng.IntN(8) == 0 {
		return 0, nil
	}
	n := copy(p, r.data[:min(len(r.data), 1+r.rng.IntN(r.maxChunk))])
	r.data = r.data[n:]
	if len(r.data) == 0 && r.rng.IntN(2) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func respCheckReader(t *testing.T, data []byte, lim Limits, want [][][]byte, wantEnd error) {
	h := fnv.New64a()
	h.Write(data)
	rng := rand.New(rand.NewPCG(h.Sum64(), uint64(lim.MaxArgs)))
	chunks := []int{1, 2, 7, 64, 4096}
	cr := &respChunkReader{data: data, rng: rng, maxChunk: chunks[rng.IntN(len(chunks))]}
	r := newReaderSize(cr, lim, 1+rng.IntN(32))
	for i := 0; ; i++ {
		args, err := r.ReadCommand()
		if err != nil {
			if i != len(want) {
				t.Fatalf("Reader on %q: %d commands then %v; ParseCommand finds %d", data, i, err, len(want))
			}
			var pe, wantPE *ProtocolError
			switch {
			case errors.As(wantEnd, &wantPE):
				if !errors.As(err, &pe) || pe.Msg != wantPE.Msg {
					t.Fatalf("Reader on %q ends with %v; ParseCommand with %v", data, err, wantEnd)
				}
			case err != wantEnd:
				t.Fatalf("Reader on %q ends with %v; want %v", data, err, wantEnd)
			}
			if r.Buffered() < 0 || r.Buffered() > len(data) {
				t.Fatalf("Buffered() = %d", r.Buffered())
			}
			return
		}
		if i >= len(want) {
			t.Fatalf("Reader on %q: command %d %q beyond the %d ParseCommand finds", data, i, args, len(want))
		}
		if !respEqualArgs(args, want[i]) {
			t.Fatalf("Reader on %q: command %d = %q, ParseCommand gives %q", data, i, args, want[i])
		}
	}
}

// FuzzParseReply checks that ParseReply never panics and keeps
// 0 <= n <= len(buf); that a parsed reply re-encodes to exactly the bytes it
// came from (the syntax it accepts is canonical); and that every shorter
// prefix of those bytes is incomplete, not an error.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nfoo\r\n:42\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := ParseReply(data)
		if n < 0 || n > len(data) {
			t.Fatalf("ParseReply(%q) n = %d", data, n)
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || n != 0 {
				t.Fatalf("ParseReply(%q): n = %d, error %v", data, n, err)
			}
			return
		}
		_ = v.String()
		// parseReplyInto, with a scratch slice left dirty by an earlier
		// reply, reads the same reply.
		dirty := []Value{{Kind: Integer, Int: 7}, {Kind: Bulk, Str: []byte("stale")}}
		if w, wn, werr := parseReplyInto(data, dirty[:1]); werr != nil || wn != n || w.String() != v.String() {
			t.Fatalf("parseReplyInto(%q) = %v, %d, %v; ParseReply = %v, %d", data, w, wn, werr, v, n)
		}
		if n == 0 {
			return
		}
		if enc := respEncodeValue(nil, v); !bytes.Equal(enc, data[:n]) {
			t.Fatalf("ParseReply(%q) = %v, which encodes as %q", data[:n], v, enc)
		}
		for k := max(0, n-256); k < n; k++ {
			if _, pn, perr := ParseReply(data[:k]); pn != 0 || perr != nil {
				t.Fatalf("ParseReply(%q), a prefix of %q: n = %d, err %v; want incomplete", data[:k], data[:n], pn, perr)
			}
		}
	})
}
