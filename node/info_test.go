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
// HTTP connections at a limit of 400 did that): the RESP and HTTP limits
// are fitted under it, leaving pebble's table cache and the peers theirs.
func TestClientLimitsFitTheOpenFileLimit(t *testing.T) {
	for _, tt := range []struct{ maxClients, fileLimit, resp, http int }{
		{10000, 1 << 20, 10000, maxHTTPConns},
		{10000, 20000, 10000, maxHTTPConns},
		{10000, 4096, 4096 - reservedFiles - (4096-reservedFiles)/4, (4096 - reservedFiles) / 4},
		{50, 4096, 50, (4096 - reservedFiles) / 4},
		{10000, 400, 1, 4},
	} {
		resp, http := fitClients(tt.maxClients, tt.fileLimit)
		if resp != tt.resp || http != tt.http {
			t.Errorf("fitClients(%d, %d) = %d, %d; want %d, %d", tt.maxClients, tt.fileLimit, resp, http, tt.resp, tt.http)
		}
		if tt.fileLimit > reservedFiles+8 && resp+http+reservedFiles > tt.fileLimit {
			t.Errorf("fitClients(%d, %d): %d + %d connections and %d reserved exceed the limit", tt.maxClients, tt.fileLimit, resp, http, reservedFiles)
		}
	}
	// A node's HTTP server gives up a request that stalls, and bounds its
	// headers (its connections are bounded by the listener).
	n := start(t, t.TempDir())
	if n.httpSrv.ReadTimeout <= 0 || n.httpSrv.WriteTimeout <= 0 || n.httpSrv.MaxHeaderBytes <= 0 || n.httpSrv.MaxHeaderBytes > 1<<20 {
		t.Errorf("HTTP server: ReadTimeout %v, WriteTimeout %v, MaxHeaderBytes %d", n.httpSrv.ReadTimeout, n.httpSrv.WriteTimeout, n.httpSrv.MaxHeaderBytes)
	}
}
