package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// respArgs builds an argument list from strings.
func respArgs(ss ...string) [][]byte {
	if ss == nil {
		return nil
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// respMultibulk encodes args as a multibulk command.
func respMultibulk(args ...[]byte) []byte {
	b := AppendArray(nil, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

func respMultibulkStrings(ss ...string) string {
	return string(respMultibulk(respArgs(ss...)...))
}

func respEqualArgs(a, b [][]byte) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// respCopyArgs copies args out of a buffer that is about to be reused.
func respCopyArgs(args [][]byte) [][]byte {
	if args == nil {
		return nil
	}
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = bytes.Clone(a)
		if out[i] == nil {
			out[i] = []byte{}
		}
	}
	return out
}

func respProtoMsg(t *testing.T, err error) string {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ProtocolError", err, err)
	}
	return pe.Msg
}

var setCmd = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"

var validCommands = []struct {
	name string
	in   string
	want []string // nil: an empty command
	n    int      // bytes taken; 0 means len(in)
}{
	{name: "set", in: setCmd, want: []string{"SET", "key", "value"}},
	{name: "get", in: "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", want: []string{"GET", "key"}},
	{name: "ping", in: "*1\r\n$4\r\nPING\r\n", want: []string{"PING"}},
	{name: "lowercase", in: "*1\r\n$4\r\nping\r\n", want: []string{"ping"}},
	{name: "empty bulk", in: "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", want: []string{"ECHO", ""}},
	{name: "binary bulk", in: "*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\x00\xffb\r\n", want: []string{"ECHO", "a\r\n\x00\xffb"}},
	{name: "bulk of star", in: "*1\r\n$3\r\n*1\r\r\n", want: []string{"*1\r"}},
	{name: "trailing bytes", in: "*1\r\n$4\r\nPING\r\n*1", want: []string{"PING"}, n: 14},
	{name: "zero count", in: "*0\r\n", want: nil},
	{name: "null count", in: "*-1\r\n", want: nil},
	{name: "negative count", in: "*-42\r\n", want: nil},
	{name: "negative count then command", in: "*-1\r\nPING\r\n", want: nil, n: 5},
	{name: "inline crlf", in: "PING\r\n", want: []string{"PING"}},
	{name: "inline lf", in: "PING\n", want: []string{"PING"}},
	{name: "inline set", in: "SET greeting hello\r\n", want: []string{"SET", "greeting", "hello"}},
	{name: "inline blanks", in: " \t SET\t\ta  b \v\f\r\n", want: []string{"SET", "a", "b"}},
	{name: "inline bare cr", in: "GET a\rb\r\n", want: []string{"GET", "a", "b"}},
	{name: "inline vtab inside word", in: "GET a\vb\r\n", want: []string{"GET", "a\vb"}},
	{name: "inline nul", in: "GET a\x00b\r\n", want: []string{"GET", "a\x00b"}},
	{name: "inline high bytes", in: "GET \xff\xfe\r\n", want: []string{"GET", "\xff\xfe"}},
	{name: "inline dollar", in: "$3\r\n", want: []string{"$3"}},
	{name: "inline empty crlf", in: "\r\n", want: nil},
	{name: "inline empty lf", in: "\n", want: nil},
	{name: "inline blank line", in: "  \t \r\n", want: nil},
	{name: "inline stops at first lf", in: "PING\nPING\n", want: []string{"PING"}, n: 5},
	{name: "double quotes", in: "SET k \"hello world\"\r\n", want: []string{"SET", "k", "hello world"}},
	{name: "double quote escapes", in: `SET k "a\nb\rc\td\be\af\\g\"h"` + "\r\n", want: []string{"SET", "k", "a\nb\rc\td\be\af\\g\"h"}},
	{name: "hex escapes", in: `SET k "\x41\x00\xff\xAb"` + "\r\n", want: []string{"SET", "k", "A\x00\xff\xab"}},
	{name: "bad hex escape", in: `SET k "\xzz\x4"` + "\r\n", want: []string{"SET", "k", "xzzx4"}},
	{name: "unknown escape", in: `SET k "\q"` + "\r\n", want: []string{"SET", "k", "q"}},
	{name: "single quotes", in: `SET k 'it\'s "so"'` + "\r\n", want: []string{"SET", "k", `it's "so"`}},
	{name: "single quotes keep backslash", in: `SET k 'a\nb'` + "\r\n", want: []string{"SET", "k", `a\nb`}},
	{name: "empty double quotes", in: `SET k ""` + "\r\n", want: []string{"SET", "k", ""}},
	{name: "empty single quotes", in: "SET k ''\r\n", want: []string{"SET", "k", ""}},
	{name: "quote inside word", in: "SET a\"b c\" d\r\n", want: []string{"SET", "ab c", "d"}},
	{name: "quote then tab", in: "SET \"a\"\tb\r\n", want: []string{"SET", "a", "b"}},
	{name: "quoted crlf", in: `SET k "line1\r\nline2"` + "\n", want: []string{"SET", "k", "line1\r\nline2"}},
	{name: "quoted blank at end", in: "SET k \"a\" \r\n", want: []string{"SET", "k", "a"}},
}

func TestParseCommand(t *testing.T) {
	for _, tc := range validCommands {
		t.Run(tc.name, func(t *testing.T) {
			args, n, err := ParseCommand([]byte(tc.in), Limits{}, nil)
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tc.in, err)
			}
			wantN := tc.n
			if wantN == 0 {
				wantN = len(tc.in)
			}
			if n != wantN {
				t.Errorf("ParseCommand(%q) n = %d, want %d", tc.in, n, wantN)
			}
			if !respEqualArgs(args, respArgs(tc.want...)) {
				t.Errorf("ParseCommand(%q) = %q, want %q", tc.in, args, tc.want)
			}
		})
	}
}

func TestParseCommandMultibulkArgsAliasAndAreCapped(t *testing.T) {
	buf := []byte(setCmd)
	args, _, err := ParseCommand(buf, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range args {
		if cap(a) != len(a) {
			t.Errorf("arg %d: cap %d != len %d, appending would overwrite the buffer", i, cap(a), len(a))
		}
	}
	buf[len("*3\r\n$3\r\n")] = 'Z'
	if string(args[0]) != "ZET" {
		t.Errorf("arg 0 = %q: multibulk args must alias the buffer", args[0])
	}
	_ = append(args[1], "XYZ"...)
	if string(args[2]) != "value" {
		t.Errorf("append to arg 1 overwrote arg 2: %q", args[2])
	}
}

func TestParseCommandInlineAliasesUnquotedArgs(t *testing.T) {
	buf := []byte("SET k \"v\" 'w' \"x\\ny\"\r\n")
	args, _, err := ParseCommand(buf, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inBuf := func(a []byte) bool {
		for i := range buf {
			if len(a) > 0 && &buf[i] == &a[0] {
				return true
			}
		}
		return false
	}
	for i, want := range []bool{true, true, true, true, false} {
		if got := inBuf(args[i]); got != want {
			t.Errorf("arg %d %q aliases buffer = %v, want %v", i, args[i], got, want)
		}
		if want && cap(args[i]) != len(args[i]) {
			t.Errorf("arg %d: cap %d != len %d", i, cap(args[i]), len(args[i]))
		}
	}
}

func TestParseCommandPipelined(t *testing.T) {
	in := setCmd + "PING\r\n\r\n" + "*0\r\n" + "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n" + "\n" + "INCR n\n" + "*1\r\n$4\r\nPI"
	want := [][]string{{"SET", "key", "value"}, {"PING"}, nil, nil, {"GET", "key"}, nil, {"INCR", "n"}}
	buf := []byte(in)
	var argsBuf [][]byte
	for i, w := range want {
		args, n, err := ParseCommand(buf, Limits{}, argsBuf)
		if err != nil || n == 0 {
			t.Fatalf("command %d: n=%d err=%v", i, n, err)
		}
		if !respEqualArgs(args, respArgs(w...)) {
			t.Fatalf("command %d = %q, want %q", i, args, w)
		}
		if args != nil {
			argsBuf = args
		}
		buf = buf[n:]
	}
	args, n, err := ParseCommand(buf, Limits{}, argsBuf)
	if args != nil || n != 0 || err != nil {
		t.Fatalf("partial tail %q: got %q, %d, %v; want nil, 0, nil", buf, args, n, err)
	}
}

var badCommands = []struct {
	name string
	in   string
	msg  string
}{
	{"letters in count", "*abc\r\n", "invalid multibulk length"},
	{"empty count", "*\r\n", "invalid multibulk length"},
	{"plus count", "*+1\r\n", "invalid multibulk length"},
	{"minus zero count", "*-0\r\n", "invalid multibulk length"},
	{"leading zero count", "*01\r\n", "invalid multibulk length"},
	{"space after count", "*1 \r\n", "invalid multibulk length"},
	{"cr without lf after count", "*1\rX", "invalid multibulk length"},
	{"lf without cr after count", "*1\n", "invalid multibulk length"},
	{"lone minus", "*-\r\n", "invalid multibulk length"},
	{"count overflows", "*99999999999999999999\r\n", "invalid multibulk length"},
	{"negative count overflows", "*-99999999999999999999\r\n", "invalid multibulk length"},
	{"very long digits", "*" + strings.Repeat("1", 1000), "invalid multibulk length"},
	{"integer element", "*1\r\n:1\r\n", "expected '$', got ':'"},
	{"inline element", "*1\r\nPING\r\n", "expected '$', got 'P'"},
	{"nul element", "*1\r\n\x00", `expected '$', got '\x00'`},
	{"crlf element", "*2\r\n$1\r\na\r\n\r\n", `expected '$', got '\x0d'`},
	{"null bulk", "*1\r\n$-1\r\n", "invalid bulk length"},
	{"negative bulk", "*1\r\n$-5\r\n", "invalid bulk length"},
	{"empty bulk length", "*1\r\n$\r\n", "invalid bulk length"},
	{"letters in bulk length", "*1\r\n$x\r\n", "invalid bulk length"},
	{"leading zero bulk length", "*1\r\n$03\r\nabc\r\n", "invalid bulk length"},
	{"bulk length overflows", "*1\r\n$99999999999999999999\r\n", "invalid bulk length"},
	{"cr without lf after bulk length", "*1\r\n$1\rXa\r\n", "invalid bulk length"},
	{"bulk too long", "*1\r\n$3\r\nabcd\r\n", "missing CRLF after bulk data"},
	{"bulk cr without lf", "*1\r\n$3\r\nabc\rX", "missing CRLF after bulk data"},
	{"bulk lf cr", "*1\r\n$3\r\nabc\n\r", "missing CRLF after bulk data"},
	{"bulk lf only", "*1\r\n$3\r\nabc\n", "missing CRLF after bulk data"},
	{"unterminated double quote", "SET k \"abc\r\n", "unbalanced quotes in request"},
	{"unterminated single quote", "SET k 'abc\r\n", "unbalanced quotes in request"},
	{"text after double quote", "SET k \"a\"b\r\n", "unbalanced quotes in request"},
	{"text after single quote", "SET k 'a'b\r\n", "unbalanced quotes in request"},
	{"quote after quote", "SET k \"a\"\"b\"\r\n", "unbalanced quotes in request"},
	{"escaped closing quote", "SET k \"a\\\"\r\n", "unbalanced quotes in request"},
	{"backslash at end", "SET k \"a\\\r\n", "unbalanced quotes in request"},
	{"lone quote", "\"\n", "unbalanced quotes in request"},
}

func TestParseCommandErrors(t *testing.T) {
	for _, tc := range badCommands {
		t.Run(tc.name, func(t *testing.T) {
			args, n, err := ParseCommand([]byte(tc.in), Limits{}, nil)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %q, %d, nil; want error %q", tc.in, args, n, tc.msg)
			}
			if args != nil || n != 0 {
				t.Errorf("ParseCommand(%q) returned args %q, n %d with error", tc.in, args, n)
			}
			if got := respProtoMsg(t, err); got != tc.msg {
				t.Errorf("ParseCommand(%q) error %q, want %q", tc.in, got, tc.msg)
			}
			if want := "Protocol error: " + tc.msg; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

var (
	small        = Limits{MaxArgs: 3, MaxBulk: 5, MaxInline: 10, MaxRequest: 10}
	smallRequest = Limits{MaxInline: 40, MaxRequest: 8}
)

var limitCases = []struct {
	name string
	lim  Limits
	in   string
	want []string // when msg == ""
	msg  string   // the error; "" for success
	n    int      // for success; 0 means len(in)
}{
	// MaxArgs.
	{name: "args at max", lim: small, in: respMultibulkStrings("a", "b", "c"), want: []string{"a", "b", "c"}},
	{name: "args over max", lim: small, in: "*4\r\n", msg: "argument count 4 exceeds max-args 3"},
	{name: "args over max before lf", lim: small, in: "*4\r", msg: "argument count 4 exceeds max-args 3"},
	{name: "args far over max", lim: small, in: "*99999999\r\n", msg: "argument count 99999999 exceeds max-args 3"},
	{name: "inline args at max", lim: small, in: "a b c\r\n", want: []string{"a", "b", "c"}},
	{name: "inline args over max", lim: small, in: "a b c d\r\n", msg: "argument count 4 exceeds max-args 3"},
	{name: "default args at max", in: "*65536\r\n$1\r\n", want: nil, n: -1},
	{name: "default args over max", in: "*65537\r\n", msg: "argument count 65537 exceeds max-args 65536"},
	{name: "default args far over max", in: "*100000\r\n", msg: "argument count 100000 exceeds max-args 65536"},

	// MaxBulk.
	{name: "bulk at max", lim: small, in: respMultibulkStrings("abcde"), want: []string{"abcde"}},
	{name: "bulk over max", lim: small, in: "*1\r\n$6\r\n", msg: "bulk length 6 exceeds max-bulk 5"},
	{name: "bulk over max before lf", lim: small, in: "*1\r\n$6\r", msg: "bulk length 6 exceeds max-bulk 5"},
	{name: "default bulk at max", in: "*1\r\n$8388608\r\n", want: nil, n: -1},
	{name: "default bulk over max", in: "*1\r\n$8388609\r\n", msg: "bulk length 8388609 exceeds max-bulk 8388608"},
	{name: "default bulk far over max", in: "*1\r\n$9999999\r\n", msg: "bulk length 9999999 exceeds max-bulk 8388608"},
	{name: "inline arg at max", lim: small, in: "abcde\r\n", want: []string{"abcde"}},
	{name: "inline arg over max", lim: small, in: "abcdef\r\n", msg: "argument of 6 bytes exceeds max-bulk 5"},
	{name: "default bulk huge", in: "*2\r\n$999999999\r\n", msg: "bulk length 999999999 exceeds max-bulk 8388608"},

	// MaxInline.
	{name: "inline at max", lim: small, in: "01234 6789\r\n", want: []string{"01234", "6789"}},
	{name: "inline at max lf", lim: small, in: "01234 6789\n", want: []string{"01234", "6789"}},
	{name: "inline at max no newline yet", lim: small, in: "0123456789", want: nil, n: -1},
	{name: "inline at max cr only", lim: small, in: "0123456789\r", want: nil, n: -1},
	{name: "inline over max", lim: small, in: "0123456789a\r\n", msg: "inline request of more than 10 bytes exceeds max-inline"},
	{name: "inline over max lf", lim: small, in: "0123456789a\n", msg: "inline request of more than 10 bytes exceeds max-inline"},
	{name: "inline over max no newline", lim: small, in: "0123456789a", msg: "inline request of more than 10 bytes exceeds max-inline"},
	{name: "inline over max two crs", lim: small, in: "0123456789\r\r\n", msg: "inline request of more than 10 bytes exceeds max-inline"},
	{name: "inline over max blanks", lim: small, in: "           \r\n", msg: "inline request of more than 10 bytes exceeds max-inline"},
	{name: "default inline at max", in: strings.Repeat("a", 65536) + "\r\n", want: []string{strings.Repeat("a", 65536)}},
	{name: "default inline over max", in: strings.Repeat("a", 65537), msg: "inline request of more than 65536 bytes exceeds max-inline"},

	// MaxRequest.
	{name: "request at max", lim: small, in: respMultibulkStrings("abcde", "abcde"), want: []string{"abcde", "abcde"}},
	{name: "request over max", lim: small, in: "*3\r\n$5\r\nabcde\r\n$5\r\nabcde\r\n$1\r\n", msg: "request of 11 bytes exceeds max-request 10"},
	{name: "inline request at max", lim: smallRequest, in: "abcd efgh\r\n", want: []string{"abcd", "efgh"}},
	{name: "inline request over max", lim: smallRequest, in: "abcd efghi\r\n", msg: "request of 9 bytes exceeds max-request 8"},
	{name: "inline quoted request over max", lim: smallRequest, in: `"\x01\x02\x03\x04\x05" abcd` + "\r\n", msg: "request of 9 bytes exceeds max-request 8"},
}

func TestParseCommandLimits(t *testing.T) {
	for _, tc := range limitCases {
		t.Run(tc.name, func(t *testing.T) {
			args, n, err := ParseCommand([]byte(tc.in), tc.lim, nil)
			if tc.msg != "" {
				if err == nil {
					t.Fatalf("ParseCommand(%.40q) = %q, %d, nil; want error %q", tc.in, args, n, tc.msg)
				}
				if got := respProtoMsg(t, err); got != tc.msg {
					t.Fatalf("error %q, want %q", got, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%.40q): %v", tc.in, err)
			}
			wantN := tc.n
			switch wantN {
			case 0:
				wantN = len(tc.in)
			case -1: // incomplete
				wantN = 0
			}
			if n != wantN || !respEqualArgs(args, respArgs(tc.want...)) {
				t.Fatalf("ParseCommand(%.40q) = %.80q, %d; want %.80q, %d", tc.in, args, n, tc.want, wantN)
			}
		})
	}
}

// TestParseCommandIncremental feeds every command one byte more at a time:
// a prefix is incomplete until the whole command is there, and an error
// appears at some prefix and then stays the same.
func TestParseCommandIncremental(t *testing.T) {
	type input struct {
		name string
		lim  Limits
		in   string
	}
	var inputs []input
	for _, tc := range validCommands {
		inputs = append(inputs, input{tc.name, Limits{}, tc.in})
	}
	for _, tc := range badCommands {
		inputs = append(inputs, input{tc.name, Limits{}, tc.in})
	}
	for _, tc := range limitCases {
		if len(tc.in) < 1000 {
			inputs = append(inputs, input{tc.name, tc.lim, tc.in})
		}
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			buf := []byte(in.in)
			wantArgs, wantN, wantErr := ParseCommand(buf, in.lim, nil)
			var firstErr error
			for k := 0; k < len(buf); k++ {
				// A fresh copy, so that reading past the prefix would be caught
				// by the race detector's bounds, not hidden by capacity.
				prefix := bytes.Clone(buf[:k])
				args, n, err := ParseCommand(prefix, in.lim, nil)
				if n < 0 || n > k {
					t.Fatalf("prefix %d: n = %d out of range", k, n)
				}
				switch {
				case err != nil:
					if wantErr == nil {
						t.Fatalf("prefix %q: error %v, whole input parses", prefix, err)
					}
					if err.Error() != wantErr.Error() {
						t.Fatalf("prefix %q: error %q, whole input %q", prefix, err, wantErr)
					}
					if firstErr == nil {
						firstErr = err
					}
				case firstErr != nil:
					t.Fatalf("prefix %q: no error after a shorter prefix gave %v", prefix, firstErr)
				case n > 0:
					// A complete command inside the input: it must be the one
					// the whole input starts with.
					if n != wantN || !respEqualArgs(args, respCopyArgs(wantArgs)) {
						t.Fatalf("prefix %q: got %q, %d; whole input gives %q, %d", prefix, args, n, wantArgs, wantN)
					}
				}
				if n > 0 && k < wantN {
					t.Fatalf("prefix %q: complete (n=%d) before the command ends at %d", prefix, n, wantN)
				}
			}
		})
	}
}

func TestParseCommandReusesArgsBuf(t *testing.T) {
	for _, in := range []string{setCmd, "SET greeting hello\r\n", "SET k \"v\"\r\n"} {
		buf := []byte(in)
		argsBuf := make([][]byte, 0, 8)
		allocs := testing.AllocsPerRun(100, func() {
			args, _, err := ParseCommand(buf, Limits{}, argsBuf)
			if err != nil || len(args) != 3 {
				t.Fatalf("ParseCommand(%q) = %q, %v", in, args, err)
			}
		})
		if allocs != 0 {
			t.Errorf("ParseCommand(%q) with argsBuf: %v allocations, want 0", in, allocs)
		}
	}
}

// respAllocated reports the bytes f allocates: the least of a few runs, as
// the runtime's own background allocations add noise.
func respAllocated(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

func TestParseCommandDoesNotTrustDeclaredLengths(t *testing.T) {
	for _, in := range []string{
		"*65536\r\n$1\r\na\r\n",
		"*65536\r\n" + strings.Repeat("$1\r\na\r\n", 10),
		"*1\r\n$8388608\r\nabc",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n",
	} {
		var n int
		var err error
		got := respAllocated(func() { _, n, err = ParseCommand([]byte(in), Limits{}, nil) })
		if n != 0 || err != nil {
			t.Fatalf("ParseCommand(%q) = %d, %v; want incomplete", in, n, err)
		}
		if got > 4096 {
			t.Errorf("ParseCommand(%q) allocated %d bytes for a partial command", in, got)
		}
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	want := Limits{MaxArgs: 65536, MaxBulk: 8 << 20, MaxInline: 64 << 10, MaxRequest: 64 << 20}
	if got := (Limits{}).WithDefaults(); got != want {
		t.Errorf("zero Limits.WithDefaults() = %+v, want %+v", got, want)
	}
	if got := (Limits{MaxArgs: -1, MaxBulk: -5}).WithDefaults(); got != want {
		t.Errorf("negative Limits.WithDefaults() = %+v, want %+v", got, want)
	}
	set := Limits{MaxArgs: 1, MaxBulk: 2, MaxInline: 3, MaxRequest: 4}
	if got := set.WithDefaults(); got != set {
		t.Errorf("WithDefaults changed set fields: %+v", got)
	}
	huge := Limits{MaxArgs: math.MaxInt, MaxBulk: math.MaxInt, MaxInline: math.MaxInt, MaxRequest: math.MaxInt}
	got := huge.WithDefaults()
	if got.MaxBulk <= 0 || got.MaxBulk > math.MaxInt/4 {
		t.Errorf("huge MaxBulk not capped: %d", got.MaxBulk)
	}
	// Huge limits must not overflow length arithmetic.
	for _, in := range []string{"*1\r\n$9223372036854775807\r\n", "*9223372036854775807\r\n$1\r\na\r\n", "abc"} {
		if _, _, err := ParseCommand([]byte(in), huge, nil); err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Errorf("ParseCommand(%q) with huge limits: %v", in, err)
			}
		}
	}
}

func TestProtocolError(t *testing.T) {
	var err error = &ProtocolError{Msg: "invalid bulk length"}
	if got := err.Error(); got != "Protocol error: invalid bulk length" {
		t.Errorf("Error() = %q", got)
	}
	if got := string(AppendError(nil, "ERR "+err.Error())); got != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Errorf("error reply = %q", got)
	}
	_, _, err = ParseCommand([]byte("*x\r\n"), Limits{}, nil)
	var pe *ProtocolError
	if !errors.As(fmt.Errorf("conn 7: %w", err), &pe) {
		t.Errorf("wrapped ParseCommand error is not a *ProtocolError: %v", err)
	}
}

// respStream is a pipelined stream of every kind of command, with the
// commands a Reader must return for it.
func respStream() (string, [][]string) {
	big := strings.Repeat("v", 40000)
	in := setCmd +
		"PING\r\n" +
		"\r\n\n   \r\n" +
		"*0\r\n*-1\r\n" +
		respMultibulkStrings("SET", "big", big) +
		"SET k \"quoted value\\n\"\n" +
		respMultibulkStrings("MGET", "a", "b", "c", "d") +
		"INCR counter\r\n"
	want := [][]string{
		{"SET", "key", "value"},
		{"PING"},
		{"SET", "big", big},
		{"SET", "k", "quoted value\n"},
		{"MGET", "a", "b", "c", "d"},
		{"INCR", "counter"},
	}
	return in, want
}

func respReadAll(t *testing.T, r *Reader) ([][]string, error) {
	t.Helper()
	var got [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			return got, err
		}
		if len(args) == 0 {
			t.Fatalf("ReadCommand returned an empty command")
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		got = append(got, cmd)
	}
}

func respEqualCommands(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

func TestReader(t *testing.T) {
	in, want := respStream()
	for _, tc := range []struct {
		name string
		rd   func() io.Reader
		size int
	}{
		{"whole", func() io.Reader { return strings.NewReader(in) }, readerBufSize},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) }, readerBufSize},
		{"one byte tiny buffer", func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) }, 1},
		{"half reads", func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) }, 7},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReaderSize(tc.rd(), Limits{}, tc.size)
			got, err := respReadAll(t, r)
			if err != io.EOF {
				t.Fatalf("after %d commands: err %v, want io.EOF", len(got), err)
			}
			if !respEqualCommands(got, want) {
				t.Fatalf("got %d commands %.200q\nwant %d %.200q", len(got), got, len(want), want)
			}
			if _, err := r.ReadCommand(); err != io.EOF {
				t.Errorf("ReadCommand after EOF: %v", err)
			}
		})
	}
}

func TestReaderUnexpectedEOF(t *testing.T) {
	for _, in := range []string{"*1\r\n$4\r\nPI", "*1", "PING", "PING\r", "   "} {
		r := NewReader(iotest.OneByteReader(strings.NewReader(in)), Limits{})
		if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
			t.Errorf("stream %q: err %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
	r := NewReader(strings.NewReader("PING\r\n*1\r\n"), Limits{})
	if args, err := r.ReadCommand(); err != nil || string(args[0]) != "PING" {
		t.Fatalf("first command: %q, %v", args, err)
	}
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated second command: err %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReaderProtocolErrorIsSticky(t *testing.T) {
	r := NewReader(strings.NewReader("PING\r\n*1\r\n:1\r\nPING\r\n"), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	_, err := r.ReadCommand()
	if got := respProtoMsg(t, err); got != "expected '$', got ':'" {
		t.Fatalf("error %q", got)
	}
	if _, err2 := r.ReadCommand(); err2 != err {
		t.Errorf("second call: %v, want the same protocol error", err2)
	}
}

func TestReaderEarlyLimitError(t *testing.T) {
	// The client claims a huge bulk and sends nothing more: the Reader must
	// fail without waiting for, or buffering, the claimed bytes.
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("*2\r\n$3\r\nSET\r\n$999999999\r\n"))
	r := NewReader(pr, Limits{})
	_, err := r.ReadCommand()
	if got := respProtoMsg(t, err); got != "bulk length 999999999 exceeds max-bulk 8388608" {
		t.Fatalf("error %q", got)
	}
}

type respErrReader struct{ err error }

func (r respErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestReaderReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("PING\r\nPI"), respErrReader{boom}), Limits{})
	if args, err := r.ReadCommand(); err != nil || string(args[0]) != "PING" {
		t.Fatalf("first command: %q, %v", args, err)
	}
	if _, err := r.ReadCommand(); err != boom {
		t.Errorf("err %v, want %v", err, boom)
	}
	r = NewReader(respErrReader{nil}, Limits{})
	if _, err := r.ReadCommand(); err != io.ErrNoProgress {
		t.Errorf("reader stuck at (0, nil): err %v, want io.ErrNoProgress", err)
	}
}

func TestReaderBuffered(t *testing.T) {
	in := setCmd + "PING\r\n" + "*1\r\n$4\r\nPI"
	r := NewReader(strings.NewReader(in), Limits{})
	if r.Buffered() != 0 {
		t.Fatalf("Buffered before reading = %d", r.Buffered())
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Buffered(), len(in)-len(setCmd); got != want {
		t.Errorf("Buffered after first command = %d, want %d", got, want)
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Buffered(), len("*1\r\n$4\r\nPI"); got != want {
		t.Errorf("Buffered with a partial command = %d, want %d", got, want)
	}

	r = NewReader(strings.NewReader(setCmd), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != 0 {
		t.Errorf("Buffered after the only command = %d, want 0", r.Buffered())
	}
}

func TestReaderReleasesLargeBuffer(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	in := respMultibulkStrings("SET", "k", big)
	r := NewReader(strings.NewReader(in+"PING\r\n"), Limits{})
	args, err := r.ReadCommand()
	if err != nil || string(args[2]) != big {
		t.Fatalf("big command: %v", err)
	}
	if len(r.buf) < 1<<20 {
		t.Fatalf("buffer %d smaller than the command it held", len(r.buf))
	}
	if args, err := r.ReadCommand(); err != nil || string(args[0]) != "PING" {
		t.Fatalf("PING: %q, %v", args, err)
	}
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("err %v, want EOF", err)
	}
	if len(r.buf) > readerIdleMax {
		t.Errorf("idle buffer kept at %d bytes", len(r.buf))
	}
}

// TestReaderDoesNotTrustDeclaredLengths: a client that declares an
// argument of max-bulk bytes and sends a few of them gets a buffer sized by
// what it sent, not by what it declared; the argument, once it arrives in
// pieces, is read whole.
func TestReaderDoesNotTrustDeclaredLengths(t *testing.T) {
	const declared = 8 << 20
	head := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + strconv.Itoa(declared) + "\r\n" + strings.Repeat("x", 100)
	r := NewReader(strings.NewReader(head), Limits{MaxBulk: declared, MaxRequest: 2 * declared})
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	if len(r.buf) > 2*readerGrowStep {
		t.Errorf("buffer of %d bytes for %d bytes received (declared %d)", len(r.buf), len(head), declared)
	}

	// The whole argument, in pieces of 64 KiB: read whole, and the
	// buffer ends no larger than twice the command.
	val := strings.Repeat("v", declared)
	in := respMultibulkStrings("SET", "k", val)
	r = NewReader(iotest.HalfReader(&chunked{s: in, n: 64 << 10}), Limits{MaxBulk: declared, MaxRequest: 2 * declared})
	args, err := r.ReadCommand()
	if err != nil || len(args) != 3 || string(args[2]) != val {
		t.Fatalf("declared argument: %d args, %v", len(args), err)
	}
	if len(r.buf) > 2*len(in)+readerGrowStep {
		t.Errorf("buffer of %d bytes for a command of %d", len(r.buf), len(in))
	}
}

// chunked reads s at most n bytes at a time.
type chunked struct {
	s string
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.s) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}

// TestReaderTrickleIsLinear feeds large commands one byte per Read. A
// parser that restarted each command on every read would take quadratic
// time here (billions of steps); the Reader resumes where it stopped.
func TestReaderTrickleIsLinear(t *testing.T) {
	many := make([]string, 60000)
	for i := range many {
		many[i] = "x"
	}
	inline := strings.Repeat("y", 60000)
	in := respMultibulkStrings(many...) + inline + "\r\n" + respMultibulkStrings("SET", "k", strings.Repeat("z", 1<<20))
	r := NewReader(iotest.OneByteReader(strings.NewReader(in)), Limits{})
	got, err := respReadAll(t, r)
	if err != io.EOF || len(got) != 3 || len(got[0]) != 60000 || got[1][0] != inline || len(got[2][2]) != 1<<20 {
		t.Fatalf("got %d commands, err %v", len(got), err)
	}
}

func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{string(AppendSimple(nil, "OK")), "+OK\r\n"},
		{string(AppendSimple(nil, "")), "+\r\n"},
		{string(AppendSimple(nil, "a\r\nb\nc\r")), "+a  b c \r\n"},
		{string(AppendError(nil, "ERR unknown command 'x'")), "-ERR unknown command 'x'\r\n"},
		{string(AppendError(nil, "ERR bad\r\nthing")), "-ERR bad  thing\r\n"},
		{string(AppendInt(nil, 0)), ":0\r\n"},
		{string(AppendInt(nil, -42)), ":-42\r\n"},
		{string(AppendInt(nil, math.MinInt64)), ":-9223372036854775808\r\n"},
		{string(AppendInt(nil, math.MaxInt64)), ":9223372036854775807\r\n"},
		{string(AppendBulk(nil, []byte("hello"))), "$5\r\nhello\r\n"},
		{string(AppendBulk(nil, nil)), "$0\r\n\r\n"},
		{string(AppendBulk(nil, []byte("a\r\nb"))), "$4\r\na\r\nb\r\n"},
		{string(AppendBulkString(nil, "hello")), "$5\r\nhello\r\n"},
		{string(AppendBulkString(nil, "")), "$0\r\n\r\n"},
		{string(AppendNull(nil)), "$-1\r\n"},
		{string(AppendNullArray(nil)), "*-1\r\n"},
		{string(AppendArray(nil, 0)), "*0\r\n"},
		{string(AppendArray(nil, 3)), "*3\r\n"},
		{string(AppendArray(nil, -1)), "*-1\r\n"},
		{string(AppendInt([]byte("prefix"), 1)), "prefix:1\r\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestAppendDoesNotAllocateWithRoom(t *testing.T) {
	b := make([]byte, 0, 256)
	v := []byte("value")
	allocs := testing.AllocsPerRun(100, func() {
		b = AppendArray(b[:0], 6)
		b = AppendSimple(b, "OK")
		b = AppendError(b, "ERR x")
		b = AppendInt(b, 12345)
		b = AppendBulk(b, v)
		b = AppendBulkString(b, "s")
		b = AppendNull(b)
	})
	if allocs != 0 {
		t.Errorf("appenders allocated %v times into a buffer with room", allocs)
	}
}

// respEncodeValue encodes v with the appenders, as a server would.
func respEncodeValue(b []byte, v Value) []byte {
	switch v.Kind {
	case SimpleString:
		return AppendSimple(b, string(v.Str))
	case Error:
		return AppendError(b, string(v.Str))
	case Integer:
		return AppendInt(b, v.Int)
	case Bulk:
		if v.Null {
			return AppendNull(b)
		}
		return AppendBulk(b, v.Str)
	case Array:
		if v.Null {
			return AppendNullArray(b)
		}
		b = AppendArray(b, len(v.Array))
		for _, e := range v.Array {
			b = respEncodeValue(b, e)
		}
		return b
	}
	panic("respEncodeValue: bad kind " + v.Kind.String())
}

func respEqualValue(a, b Value) bool {
	if a.Kind != b.Kind || a.Null != b.Null || a.Int != b.Int || !bytes.Equal(a.Str, b.Str) || len(a.Array) != len(b.Array) {
		return false
	}
	for i := range a.Array {
		if !respEqualValue(a.Array[i], b.Array[i]) {
			return false
		}
	}
	return true
}

func TestAppendRoundTrip(t *testing.T) {
	values := []Value{
		{Kind: SimpleString, Str: []byte("OK")},
		{Kind: SimpleString, Str: []byte{}},
		{Kind: Error, Str: []byte("ERR wrong number of arguments for 'get' command")},
		{Kind: Error, Str: []byte("WRONGTYPE Operation against a key holding the wrong kind of value")},
		{Kind: Integer, Int: 0},
		{Kind: Integer, Int: -1},
		{Kind: Integer, Int: math.MinInt64},
		{Kind: Integer, Int: math.MaxInt64},
		{Kind: Bulk, Str: []byte("hello")},
		{Kind: Bulk, Str: []byte{}},
		{Kind: Bulk, Str: []byte("\r\n\x00\xff$3\r\n")},
		{Kind: Bulk, Null: true},
		{Kind: Array, Null: true},
		{Kind: Array, Array: []Value{}},
		{Kind: Array, Array: []Value{
			{Kind: Bulk, Str: []byte("a")},
			{Kind: Bulk, Null: true},
			{Kind: Integer, Int: 7},
			{Kind: Array, Array: []Value{{Kind: SimpleString, Str: []byte("nested")}, {Kind: Array, Null: true}}},
		}},
	}
	var stream []byte
	for _, v := range values {
		enc := respEncodeValue(nil, v)
		got, n, err := ParseReply(enc)
		if err != nil || n != len(enc) || !respEqualValue(got, v) {
			t.Errorf("ParseReply(%q) = %v, %d, %v; want %v, %d", enc, got, n, err, v, len(enc))
		}
		for k := range len(enc) {
			if _, n, err := ParseReply(enc[:k]); n != 0 || err != nil {
				t.Errorf("ParseReply(%q) prefix of %q: n=%d err=%v, want incomplete", enc[:k], enc, n, err)
			}
		}
		stream = append(stream, enc...)
	}
	for i, v := range values {
		got, n, err := ParseReply(stream)
		if err != nil || n == 0 || !respEqualValue(got, v) {
			t.Fatalf("value %d from stream: %v, %d, %v; want %v", i, got, n, err, v)
		}
		stream = stream[n:]
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
}

func TestParseReplyErrors(t *testing.T) {
	for _, tc := range []struct {
		in, msg string
	}{
		{"?x\r\n", "unknown reply type '?'"},
		{"\x00", `unknown reply type '\x00'`},
		{"+OK\rX", "CR without LF in simple-string reply"},
		{"+OK\n", "LF without CR in simple-string reply"},
		{"-ERR\n", "LF without CR in error reply"},
		{":abc\r\n", "invalid integer reply"},
		{":\r\n", "invalid integer reply"},
		{":-0\r\n", "invalid integer reply"},
		{":9223372036854775808\r\n", "invalid integer reply"},
		{"$-2\r\n", "invalid bulk length"},
		{"$x\r\n", "invalid bulk length"},
		{"$3\r\nabcd", "missing CRLF after bulk data"},
		{"$3\r\nabc\n\r", "missing CRLF after bulk data"},
		{"$536870913\r\n", "bulk length 536870913 exceeds 536870912"},
		{"*-2\r\n", "invalid array length"},
		{"*x\r\n", "invalid array length"},
		{"*16777217\r\n", "array length 16777217 exceeds 16777216"},
		{"*99999999999999999999\r\n", "invalid array length"},
		{"*2\r\n:1\r\n?\r\n", "unknown reply type '?'"},
		{strings.Repeat("*1\r\n", 65) + ":1\r\n", "reply nests deeper than 64 arrays"},
		{strings.Repeat("*1\r\n", 100000), "reply nests deeper than 64 arrays"},
	} {
		v, n, err := ParseReply([]byte(tc.in))
		if err == nil {
			t.Errorf("ParseReply(%.40q) = %v, %d; want error %q", tc.in, v, n, tc.msg)
			continue
		}
		if got := respProtoMsg(t, err); got != tc.msg || n != 0 {
			t.Errorf("ParseReply(%.40q) error %q, n %d; want %q, 0", tc.in, got, n, tc.msg)
		}
	}
}

func TestParseReplyHostile(t *testing.T) {
	// 64 nested arrays are accepted.
	deep := strings.Repeat("*1\r\n", 64) + ":1\r\n"
	v, n, err := ParseReply([]byte(deep))
	if err != nil || n != len(deep) {
		t.Fatalf("64 nested arrays: %v, %d, %v", v, n, err)
	}
	for d := 0; d < 64; d++ {
		v = v.Array[0]
	}
	if v.Kind != Integer || v.Int != 1 {
		t.Fatalf("innermost value %v", v)
	}

	// Huge declared sizes with few bytes behind them allocate little.
	for _, in := range []string{
		"*16777216\r\n:1\r\n:2\r\n",
		"*16777216\r\n" + strings.Repeat("*16777216\r\n", 63),
		"$536870912\r\nabc",
		"*3\r\n*16777216\r\n$536870912\r\n",
	} {
		var n int
		var err error
		got := respAllocated(func() { _, n, err = ParseReply([]byte(in)) })
		if n != 0 || err != nil {
			t.Fatalf("ParseReply(%.40q) = %d, %v; want incomplete", in, n, err)
		}
		if got > 1<<16 {
			t.Errorf("ParseReply(%.40q) allocated %d bytes", in, got)
		}
	}
}

func TestValueString(t *testing.T) {
	v := Value{Kind: Array, Array: []Value{
		{Kind: SimpleString, Str: []byte("OK")},
		{Kind: Error, Str: []byte("ERR x")},
		{Kind: Integer, Int: -3},
		{Kind: Bulk, Str: []byte("a\r\n")},
		{Kind: Bulk, Null: true},
		{Kind: Array, Null: true},
		{Kind: Array, Array: []Value{}},
		{},
	}}
	want := `*[+"OK", -"ERR x", :-3, $"a\r\n", $nil, *nil, *[], Kind(0x00)]`
	if got := v.String(); got != want {
		t.Errorf("String() = %s\nwant       %s", got, want)
	}
	if got := Kind('$').String(); got != "bulk" {
		t.Errorf("Kind('$') = %q", got)
	}
}

func BenchmarkParseCommand(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"set-multibulk", setCmd},
		{"inline", "SET greeting hello\r\n"},
		{"inline-quoted", "SET greeting \"hello world\\n\"\r\n"},
		{"value-1KB", respMultibulkStrings("SET", "key:000000000042", strings.Repeat("v", 1024))},
		{"mget-16", respMultibulkStrings(append([]string{"MGET"}, strings.Fields(strings.Repeat("key:0000000001 ", 16))...)...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := []byte(bc.in)
			var args [][]byte
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				var err error
				args, _, err = ParseCommand(buf, Limits{}, args)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(args)), "args/op")
		})
	}
}

// respLoopReader serves the same bytes forever.
type respLoopReader struct {
	data []byte
	off  int
}

func (r *respLoopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkReadCommand(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"set-pipelined", setCmd},
		{"value-1KB", respMultibulkStrings("SET", "key:000000000042", strings.Repeat("v", 1024))},
		{"value-64KB", respMultibulkStrings("SET", "key:000000000042", strings.Repeat("v", 64<<10))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewReader(&respLoopReader{data: []byte(bc.in)}, Limits{})
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := r.ReadCommand(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendBulk(b *testing.B) {
	for _, size := range []int{16, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			v := bytes.Repeat([]byte("v"), size)
			buf := make([]byte, 0, size+32)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				buf = AppendBulk(buf[:0], v)
			}
		})
	}
}
