package wire

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHTTPKV sends arbitrary requests to /kv/{key}: any method of three,
// key, JSON body and context header. The API must never fail with a
// server error over a healthy backend, must answer in JSON, and a value it
// accepted must read back: a PUT answered 204 is followed by a GET of the
// key that returns the value (JSON-equal, except for a string that is
// itself a JSON document, which reads back as that document).
func FuzzHTTPKV(f *testing.F) {
	h := NewHTTPHandler(HTTPConfig{Backend: newFakeBackend(), MaxKeySize: 64, MaxValueSize: 256})
	f.Add(uint8(1), "k", `"v"`, "")
	f.Add(uint8(1), "k", `{"a": [1, 2.5, null]}`, "")
	f.Add(uint8(1), "k", `"{\"a\":1}"`, "")
	f.Add(uint8(1), "k", `"v"`, "AQE")
	f.Add(uint8(1), "k/x y", `12`, "!!")
	f.Add(uint8(0), "k", "", "")
	f.Add(uint8(2), "k", "", "AgA")
	f.Add(uint8(1), strings.Repeat("k", 65), `"v"`, "")
	f.Add(uint8(1), "k", `[`+strings.Repeat("1,", 200)+`1]`, "")
	f.Fuzz(func(t *testing.T, m uint8, key, body, tok string) {
		method := []string{"GET", "PUT", "DELETE"}[m%3]
		res := serveKV(h, method, key, body, tok)
		if res.Code >= 500 {
			t.Fatalf("%s %q body %q ctx %q: %d %s", method, key, body, tok, res.Code, res.Body)
		}
		if res.Body.Len() > 0 && res.Header().Get("Content-Type") == "application/json" && !json.Valid(res.Body.Bytes()) {
			t.Fatalf("%s %q: body is not JSON: %q", method, key, res.Body)
		}
		if method != "PUT" || res.Code != http.StatusNoContent {
			return
		}
		got := serveKV(h, "GET", key, "", "")
		var doc struct{ Value json.RawMessage }
		if got.Code != http.StatusOK || json.Unmarshal(got.Body.Bytes(), &doc) != nil {
			t.Fatalf("PUT %q %q accepted, then GET: %d %s", key, body, got.Code, got.Body)
		}
		var s string
		if json.Unmarshal([]byte(body), &s) == nil && json.Valid([]byte(s)) {
			return // a string holding JSON reads back as that JSON
		}
		var want, have any
		if json.Unmarshal([]byte(body), &want) != nil || json.Unmarshal(doc.Value, &have) != nil || !jsonEqual(want, have) {
			t.Fatalf("PUT %q %q, GET returned value %s", key, body, doc.Value)
		}
	})
}

func serveKV(h http.Handler, method, key, body, tok string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/kv/"+url.PathEscape(key), strings.NewReader(body))
	if tok != "" {
		req.Header.Set(ContextHeader, tok)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
