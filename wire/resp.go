// RESP2 codec for the client protocol.
//
// The parsers are pure functions on []byte in the redcon style:
// ParseCommand takes one command (a multibulk "*N\r\n$len\r\n...\r\n" or an
// inline line, the way Redis accepts them) from the front of a buffer, and
// ParseReply takes one reply. Both return n == 0 and a nil error while the
// buffer holds only part of a message, so the caller reads more and calls
// again. Replies are written with the Append* functions, which append to a
// caller's slice in the strconv.Append* style and never allocate beyond
// growing it. Reader drives ParseCommand over a connection with one reusable
// buffer and keeps its progress between reads, so a command trickling in one
// byte at a time costs linear, not quadratic, work.
//
// Hostile input is the normal case for a server codec, so the parsers
//   - never allocate from an unchecked length: preallocation is bounded by the
//     Limits and by the bytes actually buffered;
//   - report a broken limit as soon as the bytes that break it arrive (a
//     "*99999999\r\n" header fails before any argument is read);
//   - decide every error from the bytes seen so far, so a command fed in
//     pieces fails with the same error as the same bytes fed whole;
//   - return a *ProtocolError, after which the connection must be closed.
//
// Multibulk arguments alias the parsed buffer and are capped (s[i:j:j]), so
// appending to one cannot overwrite the bytes that follow it.

package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Default limits. MaxInline matches Redis's PROTO_INLINE_MAX_SIZE; MaxBulk is
// far below Redis's 512 MiB proto-max-bulk-len because a Dynamo-style store
// replicates every value to N nodes and hints it on failure.
const (
	defaultMaxArgs    = 65536
	defaultMaxBulk    = 8 << 20
	defaultMaxInline  = 64 << 10
	defaultMaxRequest = 64 << 20

	// maxLimit caps every limit so that offset arithmetic (offset + length +
	// CRLF, running totals) cannot overflow an int.
	maxLimit = math.MaxInt / 4
)

// Limits bound what one request may hold. Zero fields mean "use default".
// The parser checks each limit as soon as the bytes that break it arrive, so
// a client cannot make the server buffer more than the limits allow.
type Limits struct {
	// MaxArgs bounds the arguments in one command (the N of "*N\r\n", or the
	// words of an inline line). Default 65536. Each argument costs a slice
	// header (24 bytes) in the parsed command, so this bounds that too.
	MaxArgs int
	// MaxBulk bounds the bytes of one argument (a bulk string, or a word of
	// an inline line). Default 8 MiB. Raising it raises the largest value a
	// client can store.
	MaxBulk int
	// MaxInline bounds one inline command line, without its line ending.
	// Default 64 KiB, as in Redis. Inline commands are for humans at a
	// terminal; clients send multibulk.
	MaxInline int
	// MaxRequest bounds the sum of the argument lengths of one command, e.g.
	// an MSET of many values each under MaxBulk. Default 64 MiB. With
	// MaxArgs it bounds the buffer one connection can make the server hold.
	MaxRequest int
}

// WithDefaults returns l with every zero (or negative) field replaced by its
// default, and every field capped at a bound that keeps length arithmetic
// from overflowing.
func (l Limits) WithDefaults() Limits {
	fix := func(v, def int) int {
		if v <= 0 {
			return def
		}
		return min(v, maxLimit)
	}
	return Limits{
		MaxArgs:    fix(l.MaxArgs, defaultMaxArgs),
		MaxBulk:    fix(l.MaxBulk, defaultMaxBulk),
		MaxInline:  fix(l.MaxInline, defaultMaxInline),
		MaxRequest: fix(l.MaxRequest, defaultMaxRequest),
	}
}

// ProtocolError is a malformed or over-limit request. The connection that
// sent it must be closed after the error is replied: the parser cannot tell
// where the next command would start.
type ProtocolError struct{ Msg string }

// Error returns "Protocol error: " followed by Msg, as Redis prefixes it; the
// server replies "-ERR " + Error().
func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// quoteByte renders c for an error message: itself when printable ASCII,
// \xHH otherwise (error replies must not carry CR, LF or binary).
func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return fmt.Sprintf(`\x%02x`, c)
}

// numStatus is the outcome of scanNumber.
type numStatus uint8

const (
	numOK      numStatus = iota
	numShort             // the buffer ends before the number and its CRLF do
	numInvalid           // not a well-formed number
	numOver              // well formed so far, positive and above the maximum
)

// scanNumber parses the decimal integer and CRLF that start at buf[i], in the
// strict form Redis's string2ll accepts: digits with no '+', no leading zeros
// and no "-0"; a leading '-' only when signed is true. It returns the value
// and the index just past the CRLF.
//
// Every outcome is decided by the bytes seen so far: the number is invalid
// at the first byte that makes it so, and over the maximum at its CR, before
// the LF arrives. A number too long for an int64 is invalid, so the scan
// looks at no more than about 21 bytes.
func scanNumber(buf []byte, i int, maxVal int64, signed bool) (v int64, next int, st numStatus) {
	neg := false
	if i < len(buf) && buf[i] == '-' {
		if !signed {
			return 0, 0, numInvalid
		}
		neg = true
		i++
	}
	start := i
	limit := uint64(math.MaxInt64)
	if neg {
		limit++ // math.MinInt64
	}
	var u uint64
	for ; i < len(buf); i++ {
		c := buf[i]
		if c < '0' || c > '9' {
			break
		}
		if i > start && buf[start] == '0' || neg && c == '0' && i == start {
			return 0, 0, numInvalid // leading zero, or "-0"
		}
		d := uint64(c - '0')
		if u > (limit-d)/10 {
			return 0, 0, numInvalid // overflows an int64
		}
		u = u*10 + d
	}
	switch {
	case i == len(buf):
		return 0, 0, numShort
	case i == start, buf[i] != '\r':
		return 0, 0, numInvalid
	case !neg && u > uint64(maxVal):
		return int64(u), 0, numOver
	case i+1 == len(buf):
		return 0, 0, numShort
	case buf[i+1] != '\n':
		return 0, 0, numInvalid
	}
	if neg {
		return int64(-u), i + 2, numOK
	}
	return int64(u), i + 2, numOK
}

// ParseCommand parses one command from the front of buf: a multibulk
// "*N\r\n$len\r\n...\r\n" or, when buf does not start with '*', an inline
// line as Redis accepts it (split on blanks, with Redis's "double" and
// 'single' quoting).
//
// It returns the arguments and the number of bytes the command took. While
// buf holds only part of a command it returns n == 0 and a nil error, except
// that a broken limit or malformed byte is reported as soon as it is in buf.
// An empty command (a blank inline line, "*0\r\n" or "*-1\r\n") is consumed
// with args == nil and n > 0. On error n is 0 and err is a *ProtocolError.
//
// Multibulk arguments alias buf; inline arguments alias buf unless unquoting
// changed them. The args slice is argsBuf[:0] grown as needed, so a caller
// that passes the previous result back parses without allocating.
func ParseCommand(buf []byte, lim Limits, argsBuf [][]byte) (args [][]byte, n int, err error) {
	lim = lim.WithDefaults()
	p := cmdParser{args: argsBuf[:0]}
	return p.parse(buf, &lim)
}

// cmdParser is ParseCommand with its progress kept between calls, so that a
// Reader whose buffer grows under a partial command resumes at the next
// argument instead of starting over. Every call must pass the same command
// start; only more bytes may follow. Offsets are relative to that start, so
// they survive the Reader moving its bytes, but args do not: the Reader
// calls reset after a move.
type cmdParser struct {
	args  [][]byte // arguments parsed so far, aliasing the caller's buffer
	off   int      // bytes taken: the multibulk header and complete arguments
	left  int      // multibulk arguments still expected
	total int      // argument bytes so far, for MaxRequest
	multi bool     // the multibulk header has been parsed
	scan  int      // inline: leading bytes known to hold no '\n'
	// After n == 0: need is the buffer length at which a parse could next
	// decide anything (complete an argument or fail), and room the length
	// the command is known to reach. Both count from the command's start.
	need, room int
}

func (p *cmdParser) reset() {
	*p = cmdParser{args: p.args[:0]}
}

func (p *cmdParser) fail(err error) ([][]byte, int, error) {
	p.reset()
	return nil, 0, err
}

func (p *cmdParser) short(need, room int) ([][]byte, int, error) {
	p.need, p.room = need, room
	return nil, 0, nil
}

func (p *cmdParser) parse(buf []byte, lim *Limits) ([][]byte, int, error) {
	if !p.multi {
		if len(buf) == 0 {
			return p.short(1, 1)
		}
		if buf[0] != '*' {
			return p.parseInline(buf, lim)
		}
		count, next, st := scanNumber(buf, 1, int64(lim.MaxArgs), true)
		switch st {
		case numShort:
			return p.short(len(buf)+1, len(buf)+1)
		case numInvalid:
			return p.fail(&ProtocolError{Msg: "invalid multibulk length"})
		case numOver:
			return p.fail(protocolErrorf("argument count %d exceeds max-args %d", count, lim.MaxArgs))
		}
		if count <= 0 {
			p.reset()
			return nil, next, nil
		}
		p.multi, p.left, p.off = true, int(count), next
		// Each argument takes at least 6 bytes ("$0\r\n\r\n"): reserve no
		// more than the buffered bytes can hold.
		p.args = slices.Grow(p.args[:0], min(p.left, (len(buf)-next)/6))
	}
	for p.left > 0 {
		pos := p.off
		if pos >= len(buf) {
			return p.short(pos+1, pos+1)
		}
		if buf[pos] != '$' {
			return p.fail(protocolErrorf("expected '$', got '%s'", quoteByte(buf[pos])))
		}
		size, next, st := scanNumber(buf, pos+1, int64(lim.MaxBulk), false)
		switch st {
		case numShort:
			return p.short(len(buf)+1, len(buf)+1)
		case numInvalid:
			return p.fail(&ProtocolError{Msg: "invalid bulk length"})
		case numOver:
			return p.fail(protocolErrorf("bulk length %d exceeds max-bulk %d", size, lim.MaxBulk))
		}
		l := int(size)
		if l > lim.MaxRequest-p.total {
			return p.fail(protocolErrorf("request of %d bytes exceeds max-request %d", p.total+l, lim.MaxRequest))
		}
		end := next + l
		if len(buf) < end+2 {
			if len(buf) <= end {
				return p.short(end+1, end+2)
			}
			if buf[end] != '\r' {
				return p.fail(&ProtocolError{Msg: "missing CRLF after bulk data"})
			}
			return p.short(end+2, end+2)
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return p.fail(&ProtocolError{Msg: "missing CRLF after bulk data"})
		}
		p.args = append(p.args, buf[next:end:end])
		p.total += l
		p.left--
		p.off = end + 2
	}
	args, n := p.args, p.off
	p.reset()
	return args, n, nil
}

// parseInline parses a line ended by "\n" (a "\r" before it is dropped).
func (p *cmdParser) parseInline(buf []byte, lim *Limits) ([][]byte, int, error) {
	maxLine := lim.MaxInline
	// A line of maxLine bytes and its CRLF fit in maxLine+2 bytes; a longer
	// search cannot find an acceptable '\n'.
	window := len(buf)
	if window-2 > maxLine {
		window = maxLine + 2
	}
	i := bytes.IndexByte(buf[p.scan:window], '\n')
	if i < 0 {
		p.scan = window
		// With no '\n' yet, the line is too long once the buffer holds
		// maxLine+2 bytes, or maxLine+1 bytes of which the last is not the
		// CR of a CRLF.
		if over := len(buf) - maxLine; over >= 2 || over == 1 && buf[maxLine] != '\r' {
			return p.fail(protocolErrorf("inline request of more than %d bytes exceeds max-inline", maxLine))
		}
		return p.short(len(buf)+1, len(buf)+1)
	}
	nl := p.scan + i
	end := nl
	if end > 0 && buf[end-1] == '\r' {
		end--
	}
	if end > maxLine {
		return p.fail(protocolErrorf("inline request of more than %d bytes exceeds max-inline", maxLine))
	}
	args, err := splitInline(buf[:end], p.args[:0], lim)
	if err != nil {
		return p.fail(err)
	}
	p.args = args
	p.reset()
	if len(args) == 0 {
		return nil, nl + 1, nil
	}
	return args, nl + 1, nil
}

// isBlank reports whether c is a C isspace() character, which is what Redis
// skips between inline arguments and requires after a closing quote.
func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// splitInline splits an inline line into arguments the way Redis's
// sdssplitargs does, appending them to args, and holds them to the same
// limits as multibulk arguments. Outside quotes, an argument ends
// at a space, tab, CR or LF. "Double quotes" take the escapes \n \r \t \b \a
// \xHH and \<any> for that byte; 'single quotes' take only \'. A quote may
// open inside a word (a"b c" is one argument, ab c), but a closing quote must
// be followed by a blank or the end of the line. Unlike Redis, a NUL byte is
// an ordinary byte rather than the end of the line.
func splitInline(line []byte, args [][]byte, lim *Limits) ([][]byte, error) {
	total := 0
	i := 0
	for {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			return args, nil
		}
		if len(args) >= lim.MaxArgs {
			return nil, protocolErrorf("argument count %d exceeds max-args %d", len(args)+1, lim.MaxArgs)
		}
		arg, next, ok := inlineArg(line, i)
		if !ok {
			return nil, &ProtocolError{Msg: "unbalanced quotes in request"}
		}
		if len(arg) > lim.MaxBulk {
			return nil, protocolErrorf("argument of %d bytes exceeds max-bulk %d", len(arg), lim.MaxBulk)
		}
		total += len(arg)
		if total > lim.MaxRequest {
			return nil, protocolErrorf("request of %d bytes exceeds max-request %d", total, lim.MaxRequest)
		}
		args = append(args, arg)
		i = next
	}
}

// inlineArg reads the argument that starts at line[i] (not a blank) and
// returns it with the index just past it; ok is false for unbalanced quotes.
func inlineArg(line []byte, i int) (arg []byte, next int, ok bool) {
	const (
		bare = iota
		double
		single
	)
	a := argBuilder{line: line, from: i, to: i}
	state := bare
	for {
		switch state {
		case bare:
			if i == len(line) {
				return a.result(), i, true
			}
			switch line[i] {
			case ' ', '\t', '\r', '\n':
				return a.result(), i, true
			case '"':
				state = double
			case '\'':
				state = single
			default:
				a.take(i)
			}
			i++
		case double:
			if i == len(line) {
				return nil, 0, false
			}
			c := line[i]
			switch {
			case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
				a.add(unhex(line[i+2])<<4 | unhex(line[i+3]))
				i += 4
			case c == '\\' && i+1 < len(line):
				switch line[i+1] {
				case 'n':
					a.add('\n')
				case 'r':
					a.add('\r')
				case 't':
					a.add('\t')
				case 'b':
					a.add('\b')
				case 'a':
					a.add('\a')
				default:
					a.take(i + 1)
				}
				i += 2
			case c == '"':
				if i+1 < len(line) && !isBlank(line[i+1]) {
					return nil, 0, false
				}
				return a.result(), i + 1, true
			default:
				a.take(i)
				i++
			}
		case single:
			if i == len(line) {
				return nil, 0, false
			}
			switch c := line[i]; {
			case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
				a.take(i + 1)
				i += 2
			case c == '\'':
				if i+1 < len(line) && !isBlank(line[i+1]) {
					return nil, 0, false
				}
				return a.result(), i + 1, true
			default:
				a.take(i)
				i++
			}
		}
	}
}

// argBuilder collects an inline argument's bytes. While they are contiguous
// in line it only tracks line[from:to]; it copies once quoting or an escape
// makes the argument differ from a subslice.
type argBuilder struct {
	line     []byte
	out      []byte // the copy, once one is needed
	from, to int    // the argument is line[from:to] while out == nil
}

// take adds the input byte line[src].
func (a *argBuilder) take(src int) {
	switch {
	case a.out != nil:
		a.out = append(a.out, a.line[src])
	case a.from == a.to:
		a.from, a.to = src, src+1
	case src == a.to:
		a.to++
	default:
		a.add(a.line[src])
	}
}

// add adds a byte that is not at the argument's place in line.
func (a *argBuilder) add(c byte) {
	if a.out == nil {
		a.out = make([]byte, 0, a.to-a.from+16)
		a.out = append(a.out, a.line[a.from:a.to]...)
	}
	a.out = append(a.out, c)
}

func (a *argBuilder) result() []byte {
	if a.out != nil {
		return a.out
	}
	return a.line[a.from:a.to:a.to]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// Reader buffer sizes.
const (
	readerBufSize  = 16 << 10 // first buffer, as Redis's PROTO_IOBUF_LEN
	readerIdleMax  = 64 << 10 // an empty buffer above this is released
	readerGrowStep = 64 << 10 // a partial command's buffer grows by at most twice its bytes and this
	readerIdleArgs = 1024     // an args slice above this is released with it
	maxEmptyReads  = 100      // (0, nil) reads in a row before io.ErrNoProgress
)

var errBadReadCount = errors.New("wire: io.Reader returned an invalid count")

// Reader reads commands from a connection with its own growable buffer.
// It is not safe for concurrent use; one goroutine owns a connection.
//
// The buffer grows only as far as the command being read needs, which the
// Limits bound, and is released when a large command has been consumed and
// nothing else is buffered.
type Reader struct {
	rd   io.Reader
	lim  Limits
	size int // first buffer size
	buf  []byte
	r, w int       // buf[r:w] is buffered and not yet parsed
	p    cmdParser // progress through the command at buf[r]
	perr error     // sticky protocol error
	rerr error     // sticky error from rd
	// beforeRead, if set, runs before each read from rd, that is whenever
	// no complete command is buffered; its error ends ReadCommand.
	beforeRead func() error
}

// BeforeRead sets f to run before each read from the underlying reader:
// each time ReadCommand has no complete command buffered and must wait for
// more bytes. A server writes its pending replies there (a client that
// sent a command and a blank line, or half of its next command, waits for
// them). An error from f is returned by ReadCommand.
func (r *Reader) BeforeRead(f func() error) { r.beforeRead = f }

// NewReader returns a Reader that parses commands from r within lim
// (zero fields of lim take their defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	return newReaderSize(r, lim, readerBufSize)
}

// newReaderSize is NewReader with a given first buffer size, so tests can
// force the buffer to move and grow under partial commands.
func newReaderSize(r io.Reader, lim Limits, size int) *Reader {
	return &Reader{rd: r, lim: lim.WithDefaults(), size: max(size, 1)}
}

// ReadCommand returns the next non-empty command. The args alias the
// Reader's buffer and are valid until the next call. It returns io.EOF when
// the stream ends between commands, io.ErrUnexpectedEOF when it ends inside
// one, a *ProtocolError on bad input (and on every later call: the
// connection must be closed), or the error from the underlying reader once
// the commands buffered before it are consumed.
func (r *Reader) ReadCommand() ([][]byte, error) {
	if r.perr != nil {
		return nil, r.perr
	}
	for {
		if r.w-r.r >= max(r.p.need, 1) {
			args, n, err := r.p.parse(r.buf[r.r:r.w], &r.lim)
			if err != nil {
				r.perr = err
				return nil, err
			}
			if n > 0 {
				r.r += n
				if r.r == r.w {
					r.r, r.w = 0, 0
				}
				if args == nil {
					continue // empty command, as Redis skips it
				}
				return args, nil
			}
		}
		if r.rerr != nil {
			if r.rerr == io.EOF && r.w > r.r {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, r.rerr
		}
		if r.beforeRead != nil {
			if err := r.beforeRead(); err != nil {
				return nil, err
			}
		}
		r.fill()
	}
}

// Buffered returns the number of bytes read from the connection and not
// yet returned as commands: a whole or partial further command. A server
// flushes its replies when this is zero, so a pipelined batch is answered
// with one write.
func (r *Reader) Buffered() int { return r.w - r.r }

// fill reads at least one byte into the buffer, or records why it cannot.
func (r *Reader) fill() {
	if r.r == r.w && len(r.buf) > readerIdleMax {
		r.buf = nil
		if cap(r.p.args) > readerIdleArgs {
			r.p.args = nil
		}
	}
	// Room for the bytes the command is known to need, and at least one
	// more, but no more than twice the bytes buffered and a step: a client
	// that declares a large argument gets the memory for it as its bytes
	// arrive, not on its word (a few hundred connections each declaring
	// max-bulk and sending nothing would otherwise hold gigabytes). A
	// large argument that does arrive costs a few doublings and copies.
	buffered := r.w - r.r
	want := max(min(r.p.room, 2*buffered+readerGrowStep), buffered+1)
	if r.buf == nil {
		r.buf = make([]byte, max(r.size, want))
	}
	if len(r.buf)-r.r < want {
		nb := r.buf
		if len(nb) < want {
			nb = make([]byte, max(want, 2*len(nb)))
		}
		copy(nb, r.buf[r.r:r.w])
		clear(r.p.args[:cap(r.p.args)]) // drop references to the old buffer
		r.buf, r.w, r.r = nb, r.w-r.r, 0
		r.p.reset() // the parsed args pointed at the old place
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			r.rerr = errBadReadCount
			return
		}
		r.w += n
		if err != nil {
			r.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.rerr = io.ErrNoProgress
}

// AppendSimple appends the simple string reply "+s\r\n". CR and LF in s,
// which would end the reply early, are replaced with spaces.
func AppendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = appendLine(b, s)
	return append(b, '\r', '\n')
}

// AppendError appends the error reply "-msg\r\n", with CR and LF in msg
// replaced with spaces. msg starts with the error code, as in
// "ERR unknown command" or "WRONGTYPE ...".
func AppendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = appendLine(b, msg)
	return append(b, '\r', '\n')
}

func appendLine(b []byte, s string) []byte {
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(b, s...)
		}
		b = append(b, s[:i]...)
		b = append(b, ' ')
		s = s[i+1:]
	}
}

// AppendInt appends the integer reply ":n\r\n".
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends the bulk string reply "$len\r\np\r\n".
func AppendBulk(b []byte, p []byte) []byte {
	b = slices.Grow(b, len(p)+24)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(p)), 10)
	b = append(b, '\r', '\n')
	b = append(b, p...)
	return append(b, '\r', '\n')
}

// AppendBulkString is AppendBulk for a string.
func AppendBulkString(b []byte, s string) []byte {
	b = slices.Grow(b, len(s)+24)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendNull appends the null bulk reply "$-1\r\n", RESP2's nil.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendNullArray appends the null array reply "*-1\r\n".
func AppendNullArray(b []byte) []byte { return append(b, "*-1\r\n"...) }

// AppendArray appends the header "*n\r\n" of an array reply; the caller
// appends the n elements after it. A negative n appends a null array.
func AppendArray(b []byte, n int) []byte {
	if n < 0 {
		return AppendNullArray(b)
	}
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// Kind is the type of a RESP2 reply, named by its first byte.
type Kind byte

// The RESP2 reply kinds.
const (
	SimpleString Kind = '+'
	Error        Kind = '-'
	Integer      Kind = ':'
	Bulk         Kind = '$'
	Array        Kind = '*'
)

func (k Kind) String() string {
	switch k {
	case SimpleString:
		return "simple-string"
	case Error:
		return "error"
	case Integer:
		return "integer"
	case Bulk:
		return "bulk"
	case Array:
		return "array"
	}
	return fmt.Sprintf("Kind(%#02x)", byte(k))
}

// Value is one decoded reply. Str holds a SimpleString, Error or Bulk and
// aliases the parsed buffer; Int holds an Integer; Array holds an Array's
// elements. Null marks the null bulk ("$-1") and null array ("*-1").
type Value struct {
	Kind  Kind
	Str   []byte
	Int   int64
	Array []Value
	Null  bool
}

// Bounds on what ParseReply accepts, so a hostile peer cannot exhaust the
// stack or memory of a client.
const (
	maxReplyDepth = 64        // arrays nested in arrays
	maxReplyArray = 1 << 24   // elements in one array
	maxReplyBulk  = 512 << 20 // bytes in one bulk string, as Redis's proto-max-bulk-len
)

// ParseReply parses one reply from the front of buf and returns it with the
// number of bytes it took. It returns n == 0 and a nil error while buf holds
// only part of a reply, and a *ProtocolError for a malformed one. Arrays may
// nest 64 deep and hold 1<<24 elements; bulk strings may hold 512 MiB; the
// memory allocated is bounded by the bytes in buf, not by declared lengths.
// Strings in the result alias buf.
func ParseReply(buf []byte) (v Value, n int, err error) {
	return parseReplyInto(buf, nil)
}

// parseReplyInto is ParseReply that builds the elements of a top-level
// array in scratch's memory (from scratch[:0]) instead of a new slice, for
// a reader that is done with each reply before it parses the next (a peer
// connection's: an allocation fewer a reply). The result's Array aliases
// scratch; nested arrays are allocated as in ParseReply.
func parseReplyInto(buf []byte, scratch []Value) (v Value, n int, err error) {
	v, n, err = parseReply(buf, 0, 0, scratch)
	if err != nil || n < 0 {
		return Value{}, 0, err
	}
	return v, n, nil
}

// parseReply parses the reply at buf[pos]; next < 0 means incomplete. A
// top-level array (depth 0) collects its elements in scratch[:0] when
// scratch is not nil.
func parseReply(buf []byte, pos, depth int, scratch []Value) (v Value, next int, err error) {
	if pos >= len(buf) {
		return Value{}, -1, nil
	}
	k := Kind(buf[pos])
	switch k {
	case SimpleString, Error:
		for i := pos + 1; i < len(buf); i++ {
			switch buf[i] {
			case '\r':
				if i+1 == len(buf) {
					return Value{}, -1, nil
				}
				if buf[i+1] != '\n' {
					return Value{}, 0, &ProtocolError{Msg: "CR without LF in " + k.String() + " reply"}
				}
				return Value{Kind: k, Str: buf[pos+1 : i : i]}, i + 2, nil
			case '\n':
				return Value{}, 0, &ProtocolError{Msg: "LF without CR in " + k.String() + " reply"}
			}
		}
		return Value{}, -1, nil
	case Integer:
		n, next, st := scanNumber(buf, pos+1, math.MaxInt64, true)
		switch st {
		case numShort:
			return Value{}, -1, nil
		case numInvalid, numOver:
			return Value{}, 0, &ProtocolError{Msg: "invalid integer reply"}
		}
		return Value{Kind: Integer, Int: n}, next, nil
	case Bulk:
		size, next, st := scanNumber(buf, pos+1, maxReplyBulk, true)
		switch {
		case st == numShort:
			return Value{}, -1, nil
		case st == numOver:
			return Value{}, 0, protocolErrorf("bulk length %d exceeds %d", size, maxReplyBulk)
		case st == numInvalid || size < -1:
			return Value{}, 0, &ProtocolError{Msg: "invalid bulk length"}
		case size == -1:
			return Value{Kind: Bulk, Null: true}, next, nil
		}
		end := next + int(size)
		if len(buf) < end+2 {
			if len(buf) > end && buf[end] != '\r' {
				return Value{}, 0, &ProtocolError{Msg: "missing CRLF after bulk data"}
			}
			return Value{}, -1, nil
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return Value{}, 0, &ProtocolError{Msg: "missing CRLF after bulk data"}
		}
		return Value{Kind: Bulk, Str: buf[next:end:end]}, end + 2, nil
	case Array:
		if depth >= maxReplyDepth {
			return Value{}, 0, protocolErrorf("reply nests deeper than %d arrays", maxReplyDepth)
		}
		count, next, st := scanNumber(buf, pos+1, maxReplyArray, true)
		switch {
		case st == numShort:
			return Value{}, -1, nil
		case st == numOver:
			return Value{}, 0, protocolErrorf("array length %d exceeds %d", count, maxReplyArray)
		case st == numInvalid || count < -1:
			return Value{}, 0, &ProtocolError{Msg: "invalid array length"}
		case count == -1:
			return Value{Kind: Array, Null: true}, next, nil
		}
		// Reserve only a few elements: append grows the slice as elements
		// actually parse, so memory follows the bytes in buf. Reserving from
		// the declared count, or even from the bytes left (each element takes
		// at least 3), would let 64 nested arrays each claim the same bytes.
		var elems []Value
		if depth == 0 && scratch != nil {
			elems = scratch[:0]
		} else {
			elems = make([]Value, 0, min(int(count), (len(buf)-next)/3, 8))
		}
		for range count {
			var e Value
			e, next, err = parseReply(buf, next, depth+1, nil)
			if err != nil || next < 0 {
				return Value{}, next, err
			}
			elems = append(elems, e)
		}
		return Value{Kind: Array, Array: elems}, next, nil
	}
	return Value{}, 0, protocolErrorf("unknown reply type '%s'", quoteByte(buf[pos]))
}

// String renders v for test failures and logs: +"OK", -"ERR x", :42,
// $"bytes", $nil, *nil, *[:1, $"a"]. Strings are Go-quoted.
func (v Value) String() string {
	var sb strings.Builder
	v.writeTo(&sb)
	return sb.String()
}

func (v Value) writeTo(sb *strings.Builder) {
	switch v.Kind {
	case SimpleString, Error, Bulk:
		sb.WriteByte(byte(v.Kind))
		if v.Null {
			sb.WriteString("nil")
			return
		}
		sb.WriteString(strconv.Quote(string(v.Str)))
	case Integer:
		sb.WriteByte(':')
		sb.WriteString(strconv.FormatInt(v.Int, 10))
	case Array:
		sb.WriteByte('*')
		if v.Null {
			sb.WriteString("nil")
			return
		}
		sb.WriteByte('[')
		for i, e := range v.Array {
			if i > 0 {
				sb.WriteString(", ")
			}
			e.writeTo(sb)
		}
		sb.WriteByte(']')
	default:
		sb.WriteString(v.Kind.String())
	}
}
