package node

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFaultStateJSONRoundTrip(t *testing.T) {
	in := FaultState{
		Blocked: []string{"n3", "n1", "n3"},
		Delays:  map[string]time.Duration{"n2": 50 * time.Millisecond, "*": 1500 * time.Microsecond, "n4": 0},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"blocked":["n3","n1","n3"],"delays":{"*":"1.5ms","n2":"50ms","n4":"0s"}}`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	out, err := ParseFaultState(b)
	if err != nil {
		t.Fatal(err)
	}
	want := FaultState{Blocked: []string{"n1", "n3"}, Delays: map[string]time.Duration{"n2": 50 * time.Millisecond, "*": 1500 * time.Microsecond}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("parsed %#v, want the normalised %#v", out, want)
	}
	var viaUnmarshal FaultState
	if err := json.Unmarshal(b, &viaUnmarshal); err != nil || !reflect.DeepEqual(viaUnmarshal, want) {
		t.Fatalf("json.Unmarshal = %#v, %v", viaUnmarshal, err)
	}
	if got := out.String(); got != "blocks n1,n3; delays * 1.5ms, n2 50ms" {
		t.Fatalf("String = %q", got)
	}
	// The empty state is a list and an object, never null, and parses back
	// from {} or explicit nulls.
	if b, _ := json.Marshal(FaultState{}); string(b) != `{"blocked":[],"delays":{}}` {
		t.Fatalf("empty state JSON = %s", b)
	}
	for _, in := range []string{`{}`, ` {"blocked":null,"delays":null} `, `{"blocked":[],"delays":{}}`} {
		if s, err := ParseFaultState([]byte(in)); err != nil || !s.Empty() || s.String() != "none" {
			t.Fatalf("ParseFaultState(%s) = %#v, %v", in, s, err)
		}
	}
}

func TestFaultStateRejectsHostileJSON(t *testing.T) {
	for in, want := range map[string]string{
		``:                                   "empty",
		`   `:                                "empty",
		`null`:                               "JSON object",
		`[]`:                                 "JSON object",
		`"heal"`:                             "JSON object",
		`{`:                                  "unexpected EOF",
		`{"blocked":"n1"}`:                   "cannot unmarshal",
		`{"block":["n1"]}`:                   `unknown field "block"`,
		`{"blocked":["n1"],"extra":1}`:       `unknown field "extra"`,
		`{"blocked":[""]}`:                   `"" is not a node name`,
		`{"blocked":["*"]}`:                  `"*" is not a node name`,
		`{"blocked":[1]}`:                    "cannot unmarshal",
		`{"delays":{"n1":"-5ms"}}`:           "negative",
		`{"delays":{"n1":"fast"}}`:           `"fast" is not a duration`,
		`{"delays":{"n1":50}}`:               "cannot unmarshal",
		`{"delays":{"n1":"2h"}}`:             "exceeds",
		`{"delays":{"":"5ms"}}`:              "needs a node name",
		`{"delays":["n1"]}`:                  "cannot unmarshal",
		`{} {}`:                              "trailing data",
		`{"blocked":["n1"]} x`:               "trailing data",
		`{"delays":{"a":"-1s","b":"nope"}}`:  "negative", // every problem at once...
		`{"delays":{"a":"-1s","b":"nope2"}}`: `"nope2"`,  // ...both of them
	} {
		_, err := ParseFaultState([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFaultState(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// FuzzParseFaultState: any input is either refused or gives a valid state
// that survives a round trip through its JSON form.
func FuzzParseFaultState(f *testing.F) {
	for _, s := range []string{`{}`, `{"blocked":["n1","n1"],"delays":{"*":"1ms"}}`, `{"delays":{"n2":"0"}}`, `{"blocked":["\u0000"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseFaultState(b)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid state %#v: %v", s, err)
		}
		enc, _ := json.Marshal(s)
		again, err := ParseFaultState(enc)
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip of %s: %#v, %v; want %#v", enc, again, err, s)
		}
	})
}

func TestFaults(t *testing.T) {
	var f Faults
	if f.Blocked("n1") || f.Delay("n1") != 0 || !f.State().Empty() {
		t.Fatal("the zero Faults has faults")
	}
	s := FaultState{Blocked: []string{"n3", "n1"}, Delays: map[string]time.Duration{"n2": 50 * time.Millisecond, "*": 5 * time.Millisecond}}
	if err := f.Set(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Set(s); err != nil { // idempotent
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"n1": true, "n2": false, "n3": true, "*": false, "": false} {
		if f.Blocked(name) != want {
			t.Errorf("Blocked(%q) = %v", name, !want)
		}
	}
	for name, want := range map[string]time.Duration{"n2": 55 * time.Millisecond, "n1": 5 * time.Millisecond, "": 5 * time.Millisecond, "*": 5 * time.Millisecond} {
		if got := f.Delay(name); got != want {
			t.Errorf("Delay(%q) = %v, want %v", name, got, want)
		}
	}
	// State is a copy: changing it changes nothing.
	got := f.State()
	got.Blocked[0] = "zz"
	got.Delays["n9"] = time.Second
	if f.Blocked("zz") || f.Delay("n9") != 5*time.Millisecond {
		t.Fatal("State shares memory with the Faults")
	}
	// An invalid state is refused and the old one stays.
	if err := f.Set(FaultState{Delays: map[string]time.Duration{"n2": -time.Second}}); err == nil {
		t.Fatal("negative delay accepted")
	}
	if !f.Blocked("n1") {
		t.Fatal("a refused Set changed the state")
	}
	// Set replaces the whole state: what is not named is healed.
	if err := f.Set(FaultState{Blocked: []string{"n2"}}); err != nil {
		t.Fatal(err)
	}
	if f.Blocked("n1") || !f.Blocked("n2") || f.Delay("n2") != 0 {
		t.Fatalf("after replacing: %v", f.State())
	}
	if err := f.Set(FaultState{}); err != nil || !f.State().Empty() {
		t.Fatalf("heal: %v, %v", f.State(), err)
	}
}

// TestFaultsConcurrent runs Set against the queries (for -race).
func TestFaultsConcurrent(t *testing.T) {
	var f Faults
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A state is seen whole: n1 is blocked exactly when n2 is delayed.
				if s := f.State(); (len(s.Blocked) > 0) != (len(s.Delays) > 0) {
					t.Errorf("torn state %v", s)
				}
				f.Blocked("n1")
				f.Delay("n2")
			}
		}()
	}
	for i := range 2000 {
		s := FaultState{}
		if i%2 == 0 {
			s = FaultState{Blocked: []string{"n1"}, Delays: map[string]time.Duration{"n2": time.Millisecond}}
		}
		if err := f.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestFaultsViewJSON(t *testing.T) {
	v := FaultsView{Enabled: true, State: FaultState{Blocked: []string{"n2"}, Delays: map[string]time.Duration{"*": time.Second}}}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"enabled":true,"blocked":["n2"],"delays":{"*":"1s"}}` {
		t.Fatalf("JSON = %s, %v", b, err)
	}
	var back FaultsView
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip: %#v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"enabled":true,"delays":{"n1":"-1s"}}`), &back); err == nil {
		t.Fatal("a view with a negative delay decoded")
	}
}
