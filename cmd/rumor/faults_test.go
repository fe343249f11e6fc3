package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseGroups(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, tc := range []struct {
		args []string
		want string // groups as fmt prints them, or the error's text
	}{
		{[]string{"n1,n2", "n3,n4,n5"}, "[[n1 n2] [n3 n4 n5]]"},
		{[]string{"n1,n2", "n3"}, "[[n1 n2] [n3]]"}, // n4, n5 form the rest
		{[]string{"n3"}, "[[n3]]"},
		{[]string{" n1 , n2 "}, "[[n1 n2]]"},
		{nil, "name the groups"},
		{[]string{"n1,n9"}, `no node "n9" in the cluster (nodes: n1, n2, n3, n4, n5)`},
		{[]string{"n1,n2", "n2,n3"}, `n2 is in two groups, "n1,n2" and "n2,n3"`},
		{[]string{"n1,n1"}, `n1 is named twice in group "n1,n1"`},
		{[]string{"n1,,n2"}, `group "n1,,n2" has an empty node name`},
		{[]string{""}, `group "" has an empty node name`},
		{[]string{"n1,n2,n3,n4,n5"}, "nothing to partition"},
		{[]string{"n1,n2", "n3,n4,n5", "n1"}, "n1 is in two groups"},
	} {
		g, err := parseGroups(tc.args, members)
		got := fmt.Sprint(g)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("parseGroups(%q) = %s, want %s", tc.args, got, tc.want)
		}
		if err != nil && g != nil {
			t.Errorf("parseGroups(%q) returned groups with an error", tc.args)
		}
	}
}

func TestNodeFaults(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4"}
	show := func(spec *faultSpec) string {
		states := nodeFaults(spec, members)
		var b strings.Builder
		for _, name := range members {
			fmt.Fprintf(&b, "%s: %s\n", name, states[name])
		}
		return b.String()
	}
	for _, tc := range []struct {
		spec    *faultSpec
		want    string
		summary string
	}{
		{nil, "n1: none\nn2: none\nn3: none\nn4: none\n", "none"},
		// Each side blocks the other; n4, not named, is a third group.
		{&faultSpec{Groups: [][]string{{"n1"}, {"n2", "n3"}}},
			"n1: blocks n2,n3,n4\nn2: blocks n1,n4\nn3: blocks n1,n4\nn4: blocks n1,n2,n3\n", "partition n1 | n2,n3 | n4"},
		{&faultSpec{Groups: [][]string{{"n3"}}},
			"n1: blocks n3\nn2: blocks n3\nn3: blocks n1,n2,n4\nn4: blocks n3\n", "isolate n3"},
		// A delay on n2: n2 delays all, the others delay n2; two add up.
		{&faultSpec{Delays: map[string]string{"n2": "50ms", "n4": "1s"}},
			"n1: delays n2 50ms, n4 1s\nn2: delays * 50ms, n4 1s\nn3: delays n2 50ms, n4 1s\nn4: delays * 1s, n2 50ms\n", "delay n2 50ms; delay n4 1s"},
		{&faultSpec{Groups: [][]string{{"n1", "n2"}, {"n3", "n4"}}, Delays: map[string]string{"n1": "10ms"}},
			"n1: blocks n3,n4; delays * 10ms\nn2: blocks n3,n4; delays n1 10ms\nn3: blocks n1,n2; delays n1 10ms\nn4: blocks n1,n2; delays n1 10ms\n",
			"partition n1,n2 | n3,n4; delay n1 10ms"},
		// A removed node named in the spec is not a member any more.
		{&faultSpec{Delays: map[string]string{"n9": "10ms"}}, "n1: none\nn2: none\nn3: none\nn4: none\n", "delay n9 10ms"},
	} {
		if got := show(tc.spec); got != tc.want {
			t.Errorf("nodeFaults(%+v):\n%s\nwant:\n%s", tc.spec, got, tc.want)
		}
		if got := tc.spec.summary(members); got != tc.summary {
			t.Errorf("summary(%+v) = %q, want %q", tc.spec, got, tc.summary)
		}
		// Every state is one a node accepts.
		for name, s := range nodeFaults(tc.spec, members) {
			if err := s.Validate(); err != nil {
				t.Errorf("%s gets an invalid state %v: %v", name, s, err)
			}
		}
	}
}

func TestDelayArguments(t *testing.T) {
	members := []string{"n1", "n2"}
	spec := &faultSpec{}
	if err := delayFaults(spec, []string{"n2", "50ms"}, members); err != nil || spec.Delays["n2"] != "50ms" {
		t.Fatalf("delay n2 50ms: %v, %+v", err, spec)
	}
	if err := delayFaults(spec, []string{"n2", "0"}, members); err != nil || len(spec.Delays) != 0 {
		t.Fatalf("delay n2 0: %v, %+v", err, spec)
	}
	for args, want := range map[string]string{
		"n2":       "name a node and a duration",
		"n2 1s 2s": "name a node and a duration",
		"n9 1s":    `no node "n9"`,
		"n2 -1s":   "negative",
		"n2 soon":  `"soon" is not a duration`,
		"n2 61s":   "exceeds the longest, " + time.Minute.String(),
	} {
		if err := delayFaults(&faultSpec{}, strings.Fields(args), members); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("delay %s: %v, want %q", args, err, want)
		}
	}
	if err := healFaults(&faultSpec{}, []string{"now"}, members); err == nil {
		t.Error("heal now accepted")
	}
	for _, args := range [][]string{nil, {"n1", "n2"}, {"n7"}} {
		if err := isolateFaults(&faultSpec{}, args, members); err == nil {
			t.Errorf("isolate %q accepted", args)
		}
	}
}
