package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rumor-kv/rumor/crdt"
)

// HTTPConfig configures the HTTP API.
type HTTPConfig struct {
	Backend      Backend
	MaxKeySize   int // default 8 KiB
	MaxValueSize int // default 4 MiB
	// Gatherer serves /metrics; nil serves none.
	Gatherer prometheus.Gatherer
	// Metrics counts requests; nil disables.
	Metrics *Metrics
	// Health returns extra fields for /health (node name, ...). May be nil.
	Health func() map[string]any
	// Cluster returns what GET /cluster shows (JSON). May be nil.
	Cluster func() any
	// Faults returns what GET /faults shows (JSON): the node's fault
	// state. Nil serves neither GET nor PUT /faults.
	Faults func() any
	// SetFaults replaces the fault state with the JSON body of PUT
	// /faults and returns the new state as Faults does. An error wrapping
	// ErrFaultsDisabled is answered with 403, any other with 400: it may
	// only fail on what the request asked.
	SetFaults func(body []byte) (any, error)
}

// maxFaultsBody bounds the body of PUT /faults.
const maxFaultsBody = 64 << 10

// ContextHeader carries a context token on HTTP reads (response) and writes
// (request), the HTTP twin of VGET's token and PUT ... CTX.
const ContextHeader = "X-Rumor-Context"

// NewHTTPHandler returns the HTTP API:
//
//	PUT    /kv/{key}  body: a JSON value; 204. With X-Rumor-Context: token,
//	                  supersedes what the token covers.
//	GET    /kv/{key}  200 {"value": V}; with siblings also
//	                  "siblings": [...] and "context": token. The token is
//	                  always in the X-Rumor-Context header. 404 if missing.
//	DELETE /kv/{key}  204, or 404 if there was nothing; honours X-Rumor-Context.
//	GET    /health    200 {"status": "ok", ...}
//	GET    /cluster   200 members, their states and shares of partitions
//	GET    /faults    200 the fault state: {"enabled": bool, "blocked":
//	                  [names], "delays": {name or "*": "50ms"}}
//	PUT    /faults    body {"blocked": [...], "delays": {...}} replaces
//	                  the fault state; 200 with the new one, 400 if the
//	                  body is not a valid state, 403 if faults are disabled
//	GET    /metrics   Prometheus text format
//
// In a cluster, ?r=n (GET), ?w=n (PUT, DELETE) and ?sloppy=yes|no set the
// request's quorum, as R, W and SLOPPY do over RESP.
//
// A JSON string is stored as its text, any other JSON value as its JSON
// encoding; a value that is valid JSON (and not a bare word) is returned as
// JSON, anything else as a JSON string. Errors are {"error": "..."}.
func NewHTTPHandler(cfg HTTPConfig) http.Handler {
	if cfg.MaxKeySize == 0 {
		cfg.MaxKeySize = 8 << 10
	}
	if cfg.MaxValueSize == 0 {
		cfg.MaxValueSize = 4 << 20
	}
	h := &httpAPI{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{key}", h.timed("get", h.get))
	mux.HandleFunc("PUT /kv/{key}", h.timed("put", h.put))
	mux.HandleFunc("DELETE /kv/{key}", h.timed("delete", h.del))
	mux.HandleFunc("GET /health", h.health)
	if cfg.Cluster != nil {
		mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, cfg.Cluster()) })
	}
	if cfg.Faults != nil {
		mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, cfg.Faults()) })
		mux.HandleFunc("PUT /faults", h.putFaults)
	}
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

type httpAPI struct{ cfg HTTPConfig }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (h *httpAPI) timed(name string, f http.HandlerFunc) http.HandlerFunc {
	m := h.cfg.Metrics.op("http", name)
	return func(w http.ResponseWriter, r *http.Request) {
		if m == nil {
			f(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: 200}
		f(sw, r)
		m.latency.Observe(time.Since(start).Seconds())
		m.requests.Inc()
		if sw.status >= 500 || (sw.status >= 400 && sw.status != http.StatusNotFound) {
			m.failures.Inc()
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (h *httpAPI) backendError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrWrongType):
		httpError(w, http.StatusConflict, "%s", ErrWrongType.Error())
	case isUnavailable(err):
		httpError(w, http.StatusServiceUnavailable, "%v", err)
	case errors.Is(err, ErrObjectTooLarge):
		httpError(w, http.StatusRequestEntityTooLarge, "%v", err)
	case isBadRequest(err):
		httpError(w, http.StatusBadRequest, "%v", err)
	default:
		httpError(w, http.StatusInternalServerError, "%v", err)
	}
}

func isBadRequest(err error) bool {
	var b BadRequest
	return errors.As(err, &b) && b.BadRequest()
}

func isUnavailable(err error) bool {
	var u Unavailable
	return errors.As(err, &u) && u.Unavailable()
}

func (h *httpAPI) key(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	k := r.PathValue("key")
	if len(k) > h.cfg.MaxKeySize {
		httpError(w, http.StatusRequestURITooLong, "key of %d bytes exceeds max-key-size %d", len(k), h.cfg.MaxKeySize)
		return nil, false
	}
	return []byte(k), true
}

func writeOpts(w http.ResponseWriter, r *http.Request) (WriteOptions, bool) {
	tok := r.Header.Get(ContextHeader)
	if tok == "" {
		return WriteOptions{}, true
	}
	ctx, cnt, err := crdt.ParseReadToken(tok)
	if err != nil {
		httpError(w, http.StatusBadRequest, "invalid %s: it must be a token from a GET", ContextHeader)
		return WriteOptions{}, false
	}
	return WriteOptions{Context: ctx, Counter: cnt, HasContext: true}, true
}

// requestContext returns r's context carrying the request's quorum from
// its query: r (reads) or w (writes), a positive number of replicas, and
// sloppy=yes|no, as GET key R n, SET ... W n and SLOPPY do over RESP.
func requestContext(w http.ResponseWriter, r *http.Request, count string) (context.Context, bool) {
	var q Quorum
	query := r.URL.Query()
	if v := query.Get(count); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			httpError(w, http.StatusBadRequest, "%s must be a positive number of replicas", count)
			return nil, false
		}
		if count == "r" {
			q.R = n
		} else {
			q.W = n
		}
	}
	switch strings.ToLower(query.Get("sloppy")) {
	case "":
	case "yes", "true", "1", "on":
		q.Sloppy = SloppyYes
	case "no", "false", "0", "off":
		q.Sloppy = SloppyNo
	default:
		httpError(w, http.StatusBadRequest, "sloppy must be yes or no")
		return nil, false
	}
	if q == (Quorum{}) {
		return r.Context(), true
	}
	return WithQuorum(r.Context(), q), true
}

// jsonValue renders stored bytes as JSON: as themselves if they are a JSON
// document that is not a bare string, otherwise as a JSON string.
//
// PUT stores a JSON string as its text and any other JSON value as its
// JSON text without surrounding white space, so text that starts or ends
// with white space was a string (" 42 " comes back as " 42 "). A string
// whose text is JSON without such space ("123", "true") cannot be told
// from the value it spells, and comes back as that value.
func jsonValue(b []byte) json.RawMessage {
	if len(b) > 0 && b[0] != '"' && !isJSONSpace(b[0]) && !isJSONSpace(b[len(b)-1]) && json.Valid(b) {
		return json.RawMessage(b)
	}
	enc, _ := json.Marshal(string(b))
	return enc
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) {
	key, ok := h.key(w, r)
	if !ok {
		return
	}
	ctx, ok := requestContext(w, r, "r")
	if !ok {
		return
	}
	o, err := h.cfg.Backend.Get(ctx, key)
	if err != nil {
		h.backendError(w, err)
		return
	}
	w.Header().Set(ContextHeader, ReadToken(o))
	switch o.Kind() {
	case crdt.KindNone:
		httpError(w, http.StatusNotFound, "key not found")
	case crdt.KindCounter:
		writeJSON(w, http.StatusOK, map[string]any{"value": o.Cnt.Value(), "type": "counter"})
	default:
		for _, sib := range o.Reg.Siblings {
			if !utf8.Valid(sib.Value) {
				// JSON carries text only: encoding/json made each bad
				// byte U+FFFD, and a client writing the value back with
				// its context replaced the value with that, for good.
				httpError(w, http.StatusNotAcceptable, "the value is not UTF-8 text, which JSON cannot carry: read it with the Redis protocol (GET, or VGET for siblings)")
				return
			}
		}
		n, _ := o.Reg.Newest()
		resp := map[string]any{"value": jsonValue(n.Value)}
		if len(o.Reg.Siblings) > 1 {
			sibs := make([]json.RawMessage, len(o.Reg.Siblings))
			for i, s := range o.Reg.Siblings {
				sibs[i] = jsonValue(s.Value)
			}
			resp["siblings"] = sibs
			resp["context"] = ReadToken(o)
		}
		if o.Conflicted() {
			// SET and INCRed concurrently: the counter is shown too, and
			// a write with the context resets it.
			resp["counter"] = o.Cnt.Value()
			resp["context"] = ReadToken(o)
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// writeRequest reads what every write takes from r: the key, the
// context token and the quorum. On a bad one it has answered.
func (h *httpAPI) writeRequest(w http.ResponseWriter, r *http.Request) ([]byte, WriteOptions, context.Context, bool) {
	key, ok := h.key(w, r)
	if !ok {
		return nil, WriteOptions{}, nil, false
	}
	opts, ok := writeOpts(w, r)
	if !ok {
		return nil, WriteOptions{}, nil, false
	}
	ctx, ok := requestContext(w, r, "w")
	return key, opts, ctx, ok
}

func (h *httpAPI) put(w http.ResponseWriter, r *http.Request) {
	key, opts, ctx, ok := h.writeRequest(w, r)
	if !ok {
		return
	}
	// A JSON string may take up to 6 bytes per byte of its text (\u00XX).
	limit := int64(6*h.cfg.MaxValueSize) + 16
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading body: %v", err)
		return
	}
	if int64(len(body)) > limit {
		httpError(w, http.StatusRequestEntityTooLarge, "body exceeds %d bytes (max-value-size %d)", limit, h.cfg.MaxValueSize)
		return
	}
	// Only a string is decoded (into its text); any other JSON value is
	// stored as its text, so its length is checked before it is parsed at
	// all, and then it is only validated: decoding a large array into Go
	// values took 50 times its size in memory.
	value := bytes.Trim(body, " \t\r\n") // JSON's white space only: "[1]\v" is not JSON
	if len(value) > 0 && value[0] == '"' {
		var str string
		if err := json.Unmarshal(value, &str); err != nil {
			httpError(w, http.StatusBadRequest, "body must be a JSON value: %v", err)
			return
		}
		value = []byte(str)
	} else if len(value) > h.cfg.MaxValueSize {
		httpError(w, http.StatusRequestEntityTooLarge, "value of %d bytes exceeds max-value-size %d", len(value), h.cfg.MaxValueSize)
		return
	} else if !json.Valid(value) {
		var v any
		err := json.Unmarshal(value, &v) // small: for the error's text
		httpError(w, http.StatusBadRequest, "body must be a JSON value: %v", err)
		return
	}
	if len(value) > h.cfg.MaxValueSize {
		httpError(w, http.StatusRequestEntityTooLarge, "value of %d bytes exceeds max-value-size %d", len(value), h.cfg.MaxValueSize)
		return
	}
	if err := h.cfg.Backend.Put(ctx, key, value, opts); err != nil {
		h.backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *httpAPI) del(w http.ResponseWriter, r *http.Request) {
	key, opts, ctx, ok := h.writeRequest(w, r)
	if !ok {
		return
	}
	existed, err := h.cfg.Backend.Delete(ctx, key, opts)
	if err != nil {
		h.backendError(w, err)
		return
	}
	if !existed {
		httpError(w, http.StatusNotFound, "key not found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *httpAPI) health(w http.ResponseWriter, r *http.Request) {
	resp := map[string]any{"status": "ok"}
	if h.cfg.Health != nil {
		for k, v := range h.cfg.Health() {
			resp[k] = v
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *httpAPI) putFaults(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFaultsBody+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading body: %v", err)
		return
	}
	if len(body) > maxFaultsBody {
		httpError(w, http.StatusRequestEntityTooLarge, "body exceeds %d bytes", maxFaultsBody)
		return
	}
	v, err := h.cfg.SetFaults(body)
	switch {
	case errors.Is(err, ErrFaultsDisabled):
		httpError(w, http.StatusForbidden, "%v", err)
	case err != nil:
		httpError(w, http.StatusBadRequest, "%v", err)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}
