package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rumor-kv/rumor/crdt"
)

// apiEnv is the HTTP API over a fake backend, served on a loopback port.
type apiEnv struct {
	ts *httptest.Server
	be *fakeBackend
}

// apiStart serves NewHTTPHandler(cfg), with a fresh fake backend when
// cfg.Backend is nil, until the test ends.
func apiStart(t *testing.T, cfg HTTPConfig) *apiEnv {
	t.Helper()
	e := &apiEnv{}
	if cfg.Backend == nil {
		e.be = newFakeBackend()
		cfg.Backend = e.be
	}
	e.ts = httptest.NewServer(NewHTTPHandler(cfg))
	t.Cleanup(e.ts.Close)
	return e
}

// apiResp is a response read whole.
type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; header holds name, value pairs.
func (e *apiEnv) do(t *testing.T, method, path, body string, header ...string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := e.ts.Client()
	client.Timeout = srvWait
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return apiResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect checks the status and, when want is not empty, that the body is
// the JSON document want (compared as values, not bytes).
func (r apiResp) expect(t *testing.T, status int, want string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if want == "" {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !apiJSONEqual(t, r.body, []byte(want)) {
		t.Errorf("body %s, want %s", bytes.TrimSpace(r.body), want)
	}
}

// expectError checks the status and that the body is {"error": msg...}
// with msg starting with prefix.
func (r apiResp) expectError(t *testing.T, status int, prefix string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	var e map[string]string
	if err := json.Unmarshal(r.body, &e); err != nil || len(e) != 1 || !strings.HasPrefix(e["error"], prefix) {
		t.Errorf("body %s, want {\"error\": %q...}", bytes.TrimSpace(r.body), prefix)
	}
}

func apiJSONEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Errorf("not JSON: %s: %v", a, err)
		return false
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("bad expectation %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// context returns the response's context token, checking that it parses.
func (r apiResp) context(t *testing.T) string {
	t.Helper()
	tok := r.header.Get(ContextHeader)
	if _, _, err := crdt.ParseReadToken(tok); err != nil {
		t.Fatalf("%s %q does not parse: %v", ContextHeader, tok, err)
	}
	return tok
}

func TestHTTPPutGet(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	r := e.do(t, "PUT", "/kv/mykey", `"myvalue"`)
	r.expect(t, http.StatusNoContent, "")
	if len(r.body) != 0 {
		t.Errorf("PUT body %q, want none", r.body)
	}
	if got := e.be.Object("mykey"); got.Kind() != crdt.KindRegister || string(got.Reg.Siblings[0].Value) != "myvalue" {
		t.Errorf("stored %v, want the text myvalue", got)
	}
	r = e.do(t, "GET", "/kv/mykey", "")
	r.expect(t, http.StatusOK, `{"value":"myvalue"}`)
	ctx, _ := crdt.ParseToken(r.context(t))
	if ctx.Get(fakeActor) != 1 {
		t.Errorf("context %v, want the one write", ctx)
	}

	// A plain PUT overwrites.
	e.do(t, "PUT", "/kv/mykey", `"second"`).expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/mykey", "").expect(t, http.StatusOK, `{"value":"second"}`)

	// Keys are path segments, unescaped.
	e.do(t, "PUT", "/kv/a%2Fb%20c", `"x"`).expect(t, http.StatusNoContent, "")
	if e.be.Object("a/b c").Kind() != crdt.KindRegister {
		t.Errorf("PUT /kv/a%%2Fb%%20c did not write the key \"a/b c\"")
	}
	e.do(t, "GET", "/kv/a%2Fb%20c", "").expect(t, http.StatusOK, `{"value":"x"}`)
}

func TestHTTPJSONValues(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	tests := []struct {
		body, stored, value string
	}{
		{`{"a": 1, "b": [true, null, "x"]}`, `{"a": 1, "b": [true, null, "x"]}`, `{"a":1,"b":[true,null,"x"]}`},
		{` [1, 2.5, "three"] ` + "\n", `[1, 2.5, "three"]`, `[1,2.5,"three"]`},
		{`42`, `42`, `42`},
		{`false`, `false`, `false`},
		{`null`, `null`, `null`},
		{`"say \"hi\"\n"`, "say \"hi\"\n", `"say \"hi\"\n"`},
		{`"\"quoted\""`, `"quoted"`, `"\"quoted\""`},
		{`"\u00e9t\u00e9"`, "été", `"été"`},
		{`""`, "", `""`},
		// Strings with white space round their ends come back as strings,
		// though their text is JSON (PUT trims the JSON values it stores).
		{`" 42 "`, " 42 ", `" 42 "`},
		{`"true\n"`, "true\n", `"true\n"`},
		// A string whose text is JSON cannot be told from that JSON: it
		// comes back as the value it spells (README, HTTP API).
		{`"123"`, "123", `123`},
	}
	for _, tt := range tests {
		e.do(t, "PUT", "/kv/k", tt.body).expect(t, http.StatusNoContent, "")
		o := e.be.Object("k")
		n, _ := o.Reg.Newest()
		if string(n.Value) != tt.stored {
			t.Errorf("PUT %s stored %q, want %q", tt.body, n.Value, tt.stored)
		}
		e.do(t, "GET", "/kv/k", "").expect(t, http.StatusOK, `{"value":`+tt.value+`}`)
	}
}

func TestJSONValue(t *testing.T) {
	t.Parallel()
	tests := []struct{ stored, want string }{
		{"hello", `"hello"`},
		{"hello world", `"hello world"`},
		{"", `""`},
		{"  ", `"  "`},
		{`{"a":1}`, `{"a":1}`},
		{" [1, 2] \n", `" [1, 2] \n"`}, // PUT trims JSON values: this was a string
		{"[1, 2]", `[1, 2]`},
		{"12", `12`},
		{"true", `true`},
		{`"quoted"`, `"\"quoted\""`},
		{`{"a":`, `"{\"a\":"`},
		{"line\r\nbreak\x00", `"line\r\nbreak\u0000"`},
	}
	for _, tt := range tests {
		if got := string(jsonValue([]byte(tt.stored))); got != tt.want {
			t.Errorf("jsonValue(%q) = %s, want %s", tt.stored, got, tt.want)
		}
	}
}

func TestHTTPMissingAndDelete(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	r := e.do(t, "GET", "/kv/nope", "")
	r.expect(t, http.StatusNotFound, `{"error":"key not found"}`)
	r.context(t) // a missing key still has a (possibly empty) context
	e.do(t, "DELETE", "/kv/nope", "").expect(t, http.StatusNotFound, `{"error":"key not found"}`)

	e.do(t, "PUT", "/kv/k", `"v"`).expect(t, http.StatusNoContent, "")
	e.do(t, "DELETE", "/kv/k", "").expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusNotFound, `{"error":"key not found"}`)
	e.do(t, "DELETE", "/kv/k", "").expect(t, http.StatusNotFound, `{"error":"key not found"}`)

	// A counter is deleted too.
	if _, err := e.be.Incr(t.Context(), []byte("n"), 3); err != nil {
		t.Fatal(err)
	}
	e.do(t, "DELETE", "/kv/n", "").expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/n", "").expect(t, http.StatusNotFound, `{"error":"key not found"}`)

	e.do(t, "POST", "/kv/k", `"v"`).expect(t, http.StatusMethodNotAllowed, "")
}

func TestHTTPSiblings(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	e.do(t, "PUT", "/kv/k", `"v1"`).expect(t, http.StatusNoContent, "")
	e.be.PutConcurrent(0x2, "k", `{"n":2}`)

	r := e.do(t, "GET", "/kv/k", "")
	tok := r.context(t)
	// Siblings in dot order, the newest as the value, and the token in the
	// body as well as the header.
	r.expect(t, http.StatusOK, `{"value":{"n":2},"siblings":["v1",{"n":2}],"context":"`+tok+`"}`)
	ctx, _ := crdt.ParseToken(tok)
	if ctx.Get(fakeActor) != 1 || ctx.Get(0x2) != 1 {
		t.Errorf("context %v, want both writes", ctx)
	}

	// A PUT with that context resolves them.
	e.do(t, "PUT", "/kv/k", `"resolved"`, ContextHeader, tok).expect(t, http.StatusNoContent, "")
	r = e.do(t, "GET", "/kv/k", "")
	r.expect(t, http.StatusOK, `{"value":"resolved"}`)
	if n := len(e.be.Object("k").Reg.Siblings); n != 1 {
		t.Errorf("%d siblings after the resolving PUT, want 1", n)
	}

	// A DELETE with a context removes what it covers: a later concurrent
	// write survives it.
	tok = r.context(t)
	e.be.PutConcurrent(0x3, "k", "v3")
	e.do(t, "DELETE", "/kv/k", "", ContextHeader, tok).expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusOK, `{"value":"v3"}`)
}

func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{MaxKeySize: 8, MaxValueSize: 64})
	// Bodies are read up to 6 bytes per value byte (a JSON string may
	// spell each byte as \u00XX), plus 16.
	const bodyLimit = 6*64 + 16

	for _, body := range []string{`{"a":`, `myvalue`, ``, `"a" "b"`, `{"a":1}}`} {
		e.do(t, "PUT", "/kv/k", body).expectError(t, http.StatusBadRequest, "body must be a JSON value")
	}
	e.do(t, "PUT", "/kv/k", strings.Repeat(" ", bodyLimit+1)).
		expectError(t, http.StatusRequestEntityTooLarge, "body exceeds 400 bytes (max-value-size 64)")
	e.do(t, "PUT", "/kv/k", `"`+strings.Repeat("v", 65)+`"`).
		expectError(t, http.StatusRequestEntityTooLarge, "value of 65 bytes exceeds max-value-size 64")
	e.do(t, "PUT", "/kv/k", `[`+strings.Repeat("1,", 32)+`1]`).
		expectError(t, http.StatusRequestEntityTooLarge, "value of 67 bytes exceeds max-value-size 64")
	// At the limits: 64 bytes spelled as 64 escapes, and a body of
	// exactly the limit.
	e.do(t, "PUT", "/kv/k", `"`+strings.Repeat(`\u0041`, 64)+`"`).expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusOK, `{"value":"`+strings.Repeat("A", 64)+`"}`)
	e.do(t, "PUT", "/kv/k", `"v"`+strings.Repeat(" ", bodyLimit-3)).expect(t, http.StatusNoContent, "")
	if o := e.be.Object("k"); len(o.Reg.Siblings) != 1 || string(o.Reg.Siblings[0].Value) != "v" {
		t.Errorf("stored %v, want the one value v", o)
	}

	for _, m := range []string{"GET", "PUT", "DELETE"} {
		e.do(t, m, "/kv/123456789", `"v"`).expectError(t, http.StatusRequestURITooLong, "key of 9 bytes exceeds max-key-size 8")
	}
	e.do(t, "PUT", "/kv/12345678", `"v"`).expect(t, http.StatusNoContent, "")

	for _, m := range []string{"PUT", "DELETE"} {
		for _, tok := range []string{"!!", "AgA", "AQ"} {
			e.do(t, m, "/kv/k", `"v"`, ContextHeader, tok).
				expectError(t, http.StatusBadRequest, "invalid X-Rumor-Context: it must be a token from a GET")
		}
	}

	e.be.SetErr(fmt.Errorf("read: %w", unavailableErr{}))
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusServiceUnavailable, `{"error":"read: 1 of 2 replicas answered"}`)
	e.do(t, "PUT", "/kv/k", `"v"`).expect(t, http.StatusServiceUnavailable, `{"error":"read: 1 of 2 replicas answered"}`)
	e.be.SetErr(errors.New("store: disk on fire"))
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusInternalServerError, `{"error":"store: disk on fire"}`)
	e.do(t, "PUT", "/kv/k", `"v"`).expect(t, http.StatusInternalServerError, `{"error":"store: disk on fire"}`)
	e.do(t, "DELETE", "/kv/k", "").expect(t, http.StatusInternalServerError, `{"error":"store: disk on fire"}`)
}

func TestHTTPCounter(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	if _, err := e.be.Incr(t.Context(), []byte("n"), 5); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "GET", "/kv/n", "")
	r.expect(t, http.StatusOK, `{"value":5,"type":"counter"}`)
	r.context(t)
	e.do(t, "PUT", "/kv/n", `"v"`).expectError(t, http.StatusConflict, "WRONGTYPE Operation against a key holding the wrong kind of value")
	if _, err := e.be.Incr(t.Context(), []byte("n"), -8); err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/kv/n", "").expect(t, http.StatusOK, `{"value":-3,"type":"counter"}`)

	// A DELETE with a GET's token resets the increments that GET saw,
	// and none made since.
	tok := e.do(t, "GET", "/kv/n", "").context(t)
	if _, err := e.be.Incr(t.Context(), []byte("n"), 10); err != nil {
		t.Fatal(err)
	}
	e.do(t, "DELETE", "/kv/n", "", ContextHeader, tok).expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/n", "").expect(t, http.StatusOK, `{"value":10,"type":"counter"}`)
}

// TestHTTPTypeConflict: a key SET and INCRed concurrently shows its
// counter beside the register, and a write with the context resolves it.
func TestHTTPTypeConflict(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	e.do(t, "PUT", "/kv/k", `"v"`).expect(t, http.StatusNoContent, "")
	e.be.IncrConcurrent(0x2, "k", 4)
	r := e.do(t, "GET", "/kv/k", "")
	tok := r.context(t)
	r.expect(t, http.StatusOK, fmt.Sprintf(`{"context":%q,"counter":4,"value":"v"}`, tok))
	e.do(t, "PUT", "/kv/k", `"w"`, ContextHeader, tok).expect(t, http.StatusNoContent, "")
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusOK, `{"value":"w"}`)
}

func TestHTTPHealth(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	e.do(t, "GET", "/health", "").expect(t, http.StatusOK, `{"status":"ok"}`)
	e = apiStart(t, HTTPConfig{Health: func() map[string]any { return map[string]any{"name": "n1", "keys": 3} }})
	e.do(t, "GET", "/health", "").expect(t, http.StatusOK, `{"status":"ok","name":"n1","keys":3}`)
	e.do(t, "GET", "/metrics", "").expect(t, http.StatusNotFound, "") // no Gatherer
}

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := apiStart(t, HTTPConfig{Gatherer: reg, Metrics: NewMetrics(reg)})
	e.do(t, "PUT", "/kv/k", `"v"`).expect(t, http.StatusNoContent, "")
	e.do(t, "PUT", "/kv/k", `bad json`).expect(t, http.StatusBadRequest, "")
	e.do(t, "GET", "/kv/k", "").expect(t, http.StatusOK, "")
	e.do(t, "GET", "/kv/missing", "").expect(t, http.StatusNotFound, "")

	labels := func(cmd string) map[string]string { return map[string]string{"protocol": "http", "command": cmd} }
	metricsCheck(t, reg, "rumor_requests_total", labels("put"), 2)
	metricsCheck(t, reg, "rumor_request_errors_total", labels("put"), 1)
	metricsCheck(t, reg, "rumor_requests_total", labels("get"), 2)
	metricsCheck(t, reg, "rumor_request_errors_total", labels("get"), 0) // a 404 is an answer, not a failure
	metricsCheck(t, reg, "rumor_request_duration_seconds", labels("get"), 2)

	r := e.do(t, "GET", "/metrics", "")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE rumor_requests_total counter\n",
		`rumor_requests_total{command="get",protocol="http"} 2` + "\n",
		`rumor_request_errors_total{command="put",protocol="http"} 1` + "\n",
		"# TYPE rumor_request_duration_seconds histogram\n",
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics does not contain %q:\n%s", want, r.body)
		}
	}
}

func TestHTTPQuorumParameters(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	got := make(chan Quorum, 1)
	e.be.getHook = func(ctx context.Context, key string) error {
		got <- QuorumFrom(ctx)
		return nil
	}
	for _, tc := range []struct {
		query string
		want  Quorum
	}{
		{"", Quorum{}},
		{"?r=3", Quorum{R: 3}},
		{"?sloppy=no", Quorum{Sloppy: SloppyNo}},
		{"?r=1&sloppy=YES", Quorum{R: 1, Sloppy: SloppyYes}},
		{"?w=3", Quorum{}}, // w is a write's
	} {
		e.do(t, "GET", "/kv/k"+tc.query, "")
		if q := <-got; q != tc.want {
			t.Errorf("GET /kv/k%s reached the backend as %+v, want %+v", tc.query, q, tc.want)
		}
	}
	for _, q := range []string{"?r=0", "?r=x", "?r=-1"} {
		e.do(t, "GET", "/kv/k"+q, "").expectError(t, http.StatusBadRequest, "r must be a positive number of replicas")
	}
	for _, m := range []string{"PUT", "DELETE"} {
		e.do(t, m, "/kv/k?w=0", `"v"`).expectError(t, http.StatusBadRequest, "w must be a positive number of replicas")
		e.do(t, m, "/kv/k?sloppy=maybe", `"v"`).expectError(t, http.StatusBadRequest, "sloppy must be yes or no")
	}
	e.do(t, "PUT", "/kv/k?w=2&sloppy=no", `"v"`).expect(t, http.StatusNoContent, "")
	if o := e.be.Object("k"); o.Kind() != crdt.KindRegister {
		t.Errorf("PUT with a quorum did not write: %v", o)
	}
}

func TestHTTPFaults(t *testing.T) {
	t.Parallel()
	// Without the hooks there is no /faults.
	e := apiStart(t, HTTPConfig{})
	if r := e.do(t, "GET", "/faults", ""); r.status != http.StatusNotFound {
		t.Errorf("GET /faults without hooks: %d", r.status)
	}
	var state = `{"blocked":[]}`
	var got []byte
	e = apiStart(t, HTTPConfig{
		Faults: func() any { return json.RawMessage(state) },
		SetFaults: func(body []byte) (any, error) {
			got = body
			switch string(body) {
			case "disabled":
				return nil, fmt.Errorf("node n1: %w", ErrFaultsDisabled)
			case "bad":
				return nil, errors.New("node: fault state: bad")
			}
			state = string(body)
			return json.RawMessage(state), nil
		},
	})
	e.do(t, "GET", "/faults", "").expect(t, http.StatusOK, `{"blocked":[]}`)
	e.do(t, "PUT", "/faults", `{"blocked":["n3"]}`).expect(t, http.StatusOK, `{"blocked":["n3"]}`)
	e.do(t, "GET", "/faults", "").expect(t, http.StatusOK, `{"blocked":["n3"]}`)
	e.do(t, "PUT", "/faults", "disabled").expectError(t, http.StatusForbidden, "node n1: faults are disabled on this node; start it with --allow-faults")
	e.do(t, "PUT", "/faults", "bad").expectError(t, http.StatusBadRequest, "node: fault state: bad")
	got = nil
	e.do(t, "PUT", "/faults", strings.Repeat(" ", maxFaultsBody+1)).expectError(t, http.StatusRequestEntityTooLarge, "body exceeds")
	if got != nil {
		t.Error("an oversized body reached SetFaults")
	}
	e.do(t, "POST", "/faults", "{}").expect(t, http.StatusMethodNotAllowed, "")
	e.do(t, "GET", "/faults", "").expect(t, http.StatusOK, `{"blocked":["n3"]}`)
}

// unavailableErr stands for a coordinator's quorum error.
type unavailableErr struct{}

func (unavailableErr) Error() string     { return "1 of 2 replicas answered" }
func (unavailableErr) Unavailable() bool { return true }

// TestHTTPPutRefusesALargeJSONValueBeforeDecodingIt: a body that is not a
// JSON string is stored as its text, so one over max-value-size is
// refused by its length, not after decoding: a 24 MiB "[0,0,...]" took
// 250 MB and 7 s of CPU to be refused. Not parallel: it counts the bytes
// the process allocates.
func TestHTTPPutRefusesALargeJSONValueBeforeDecodingIt(t *testing.T) {
	const maxValue = 256 << 10
	h := NewHTTPHandler(HTTPConfig{Backend: newFakeBackend(), MaxValueSize: maxValue})
	body := []byte("[")
	for len(body) < 6*maxValue-2 {
		body = append(body, "1,"...)
	}
	body = append(body, "1]"...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/kv/k", bytes.NewReader(body)))
	runtime.ReadMemStats(&after)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", rec.Code, rec.Body)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > uint64(10*len(body)) { // reading the body takes 2-4x; decoding it took 51x
		t.Errorf("refusing a %d KiB JSON array over max-value-size allocated %d KiB (%.0fx the body)", len(body)>>10, allocated>>10, float64(allocated)/float64(len(body)))
	}
	// A JSON string over the bound is refused too, and a bad value is 400.
	str := append(append([]byte(`"`), bytes.Repeat([]byte("x"), maxValue+1)...), '"')
	for _, tt := range []struct {
		body []byte
		code int
	}{{str, http.StatusRequestEntityTooLarge}, {[]byte(`[1, 2`), http.StatusBadRequest}, {[]byte(`"unterminated`), http.StatusBadRequest}, {nil, http.StatusBadRequest},
		// White space JSON does not allow is no JSON, round a value or not.
		{[]byte("[1]\v"), http.StatusBadRequest}, {[]byte("\f{\"a\":1}"), http.StatusBadRequest},
		{[]byte("\u00a042"), http.StatusBadRequest}, {[]byte("\"x\"\v"), http.StatusBadRequest}, {[]byte(" \t[1]\r\n"), http.StatusNoContent},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/kv/k", bytes.NewReader(tt.body)))
		if rec.Code != tt.code {
			t.Errorf("PUT of %.20q: %d %s, want %d", tt.body, rec.Code, rec.Body, tt.code)
		}
	}
}

// TestHTTPRefusesValuesJSONCannotCarry: a value (or a sibling) that is not
// UTF-8 text came back with each bad byte replaced by U+FFFD and a 200,
// and writing it back with its context replaced the value for good. Now
// GET answers 406 and says how to read it; the value is untouched.
func TestHTTPRefusesValuesJSONCannotCarry(t *testing.T) {
	t.Parallel()
	e := apiStart(t, HTTPConfig{})
	bin := "\xff\xfe\x00ok\x80"
	if err := e.be.Put(context.Background(), []byte("bin"), []byte(bin), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/kv/bin", "").expectError(t, http.StatusNotAcceptable, "the value is not UTF-8 text, which JSON cannot carry: read it with the Redis protocol")
	if got := e.be.Object("bin"); string(got.Reg.Siblings[0].Value) != bin {
		t.Fatalf("value now %q", got.Reg.Siblings[0].Value)
	}
	// One binary sibling among text ones: the same.
	e.be.Put(context.Background(), []byte("sibs"), []byte("text"), WriteOptions{})
	e.be.PutConcurrent(fakeActor+1, "sibs", bin)
	e.do(t, "GET", "/kv/sibs", "").expectError(t, http.StatusNotAcceptable, "the value is not UTF-8 text")
	// UTF-8 text beyond ASCII is text.
	e.be.Put(context.Background(), []byte("utf"), []byte("héllo ✓"), WriteOptions{})
	e.do(t, "GET", "/kv/utf", "").expect(t, http.StatusOK, `{"value":"héllo ✓"}`)
}
