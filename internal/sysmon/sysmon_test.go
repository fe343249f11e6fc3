package sysmon

import (
	"os"
	"runtime"
	"slices"
	"testing"
)

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"PATH=/bin", "HOME=/root"}, []string{"PATH=/bin", "HOME=/root", "GODEBUG=" + Setting}, true},
		{"empty environment", nil, []string{"GODEBUG=" + Setting}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "PATH=/bin"}, []string{"GODEBUG=" + Setting, "PATH=/bin"}, true},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1,gctrace=1"}, []string{"GODEBUG=madvdontneed=1,gctrace=1," + Setting}, true},
		{"the user's schedtrace=0 stands", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"the user's schedtrace stands among others", []string{"A=1", "GODEBUG=gctrace=1,schedtrace=1000,scheddetail=1"}, []string{"A=1", "GODEBUG=gctrace=1,schedtrace=1000,scheddetail=1"}, false},
		{"only the first GODEBUG counts", []string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=gctrace=1," + Setting, "GODEBUG=schedtrace=0"}, true},
		{"a key that only starts like it", []string{"GODEBUG=schedtracex=1"}, []string{"GODEBUG=schedtracex=1," + Setting}, true},
		{"a variable that only ends like it", []string{"XGODEBUG=schedtrace=0"}, []string{"XGODEBUG=schedtrace=0", "GODEBUG=" + Setting}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got, changed := Env(in)
			if changed != tc.changed || !slices.Equal(got, tc.want) {
				t.Fatalf("Env(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
			}
			if !slices.Equal(in, tc.in) {
				t.Fatalf("Env modified its argument: %q, was %q", in, tc.in)
			}
		})
	}
}

// TestBinaryIsThePathStartedFrom: the restart execs the path the binary
// was started from (the process keeps its name), as long as it holds this
// binary.
func TestBinaryIsThePathStartedFrom(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the restart is Linux-only")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := binary(); got != exe {
		t.Fatalf("binary() = %q, want %q", got, exe)
	}
}
