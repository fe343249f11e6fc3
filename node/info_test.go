package node

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestInfoMemory: INFO has Redis's used_memory (redis-cli --stat and
// monitoring tools read it; without it --stat printed
// "--9223372036854775808B"), the process's resident memory.
func TestInfoMemory(t *testing.T) {
	n := start(t, t.TempDir())
	info, err := client(t, n).Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	if !strings.HasPrefix(info, "# Memory\r\n") {
		t.Errorf("INFO memory:\n%s", info)
	}
	used, err := strconv.ParseUint(fields["used_memory"], 10, 64)
	if err != nil || used < 4<<20 || used > 4<<30 {
		t.Errorf("used_memory %q: want the node's resident bytes (%v)\n%s", fields["used_memory"], err, info)
	}
	if fields["used_memory_rss"] != fields["used_memory"] || !strings.HasSuffix(fields["used_memory_human"], "M") {
		t.Errorf("used_memory_rss %q, used_memory_human %q for used_memory %d", fields["used_memory_rss"], fields["used_memory_human"], used)
	}
	if heap, err := strconv.ParseUint(fields["used_memory_go_heap"], 10, 64); err != nil || heap == 0 || heap > used {
		t.Errorf("used_memory_go_heap %q (used_memory %d)", fields["used_memory_go_heap"], used)
	}
	if fields["maxmemory"] != "0" || fields["maxmemory_policy"] != "noeviction" {
		t.Errorf("maxmemory %q, policy %q", fields["maxmemory"], fields["maxmemory_policy"])
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.00K", 1536: "1.50K", 5 << 20: "5.00M", 3 << 30: "3.00G", 2 << 40: "2.00T", 3 << 50: "3072.00T"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestClientLimitsFitTheOpenFileLimit: past the open-file limit a client
// connection takes the files pebble needs, and writes stall (450 stalled
// HTTP connections at a limit of 400 did that): pebble's table cache and
// the RESP and HTTP limits are fitted under it. A common limit of 1024
// still serves hundreds of clients (reserving pebble's default 1000 files
// left one).
func TestClientLimitsFitTheOpenFileLimit(t *testing.T) {
	for _, tt := range []struct{ maxClients, fileLimit, resp, http, pebble int }{
		{10000, 1 << 20, 10000, maxHTTPConns, maxPebbleFiles},
		{10000, 20000, 10000, maxHTTPConns, maxPebbleFiles},
		{10000, 1024, 440, 88, 176},
		{50, 1024, 50, 88, 176},
		{10000, 400, 50, 10, 20},
		{10000, 10, 10, 2, 4},
	} {
		resp, http, pebble := fileBudget(tt.maxClients, tt.fileLimit)
		if resp != tt.resp || http != tt.http || pebble != tt.pebble {
			t.Errorf("fileBudget(%d, %d) = %d, %d, %d; want %d, %d, %d", tt.maxClients, tt.fileLimit, resp, http, pebble, tt.resp, tt.http, tt.pebble)
		}
		if tt.fileLimit > 2*reservedFiles && resp+http+pebble+reservedFiles > tt.fileLimit {
			t.Errorf("fileBudget(%d, %d): %d + %d + %d and %d reserved exceed the limit", tt.maxClients, tt.fileLimit, resp, http, pebble, reservedFiles)
		}
	}
	// A node's HTTP server gives up a request that stalls, and bounds its
	// headers (its connections are bounded by the listener).
	n := start(t, t.TempDir())
	if n.httpSrv.ReadTimeout <= 0 || n.httpSrv.WriteTimeout <= 0 || n.httpSrv.MaxHeaderBytes <= 0 || n.httpSrv.MaxHeaderBytes > 1<<20 {
		t.Errorf("HTTP server: ReadTimeout %v, WriteTimeout %v, MaxHeaderBytes %d", n.httpSrv.ReadTimeout, n.httpSrv.WriteTimeout, n.httpSrv.MaxHeaderBytes)
	}
}
