package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rumor-kv/rumor/internal/sysmon"
	"github.com/rumor-kv/rumor/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rumor-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rumor")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building rumor: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a rumor node running as a child process.
type proc struct {
	cmd        *exec.Cmd
	clientAddr string
	httpAddr   string
	gossipAddr string
	done       chan struct{}
	exitErr    error
	stderr     *testutil.Buffer
}

var startedLine = regexp.MustCompile(`node started.* client=(\S+) http=(\S+) gossip=(\S+)`)

// startNode runs `rumor node` on OS-chosen ports and waits until it serves.
func startNode(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	return startNodeEnv(t, nil, dataDir, args...)
}

// startNodeEnv is startNode with more environment variables ("K=V").
func startNodeEnv(t *testing.T, env []string, dataDir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"node", "--name", "e2e", "--data-dir", dataDir,
		"--client-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)...) // a later --name wins
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	pr, pw := io.Pipe()
	p := &proc{cmd: cmd, done: make(chan struct{}), stderr: &testutil.Buffer{}}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	addrs := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.stderr.Write([]byte(sc.Text() + "\n"))
			if m := startedLine.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1:]
			}
		}
	}()
	select {
	case a := <-addrs:
		p.clientAddr, p.httpAddr, p.gossipAddr = a[0], a[1], a[2]
	case <-p.done:
		t.Fatalf("node exited before serving: %v\n%s", p.exitErr, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("node did not start within 30s:\n%s", p.stderr)
	}
	return p
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(d):
		t.Fatalf("node still running after %v", d)
		return nil
	}
}

func TestRedisClientAgainstBinary(t *testing.T) {
	p := startNode(t, t.TempDir())
	c := redis.NewClient(&redis.Options{Addr: p.clientAddr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if v, err := c.Incr(ctx, "visits").Result(); err != nil || v != 1 {
		t.Fatalf("INCR = %d, %v", v, err)
	}
	pipe := c.Pipeline()
	for i := 0; i < 100; i++ {
		pipe.Set(ctx, fmt.Sprint("p", i), i, 0)
		pipe.Get(ctx, fmt.Sprint("p", i))
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if v := cmds[2*i+1].(*redis.StringCmd).Val(); v != fmt.Sprint(i) {
			t.Fatalf("pipelined GET p%d = %q", i, v)
		}
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil || !strings.Contains(info, "# Server") || !strings.Contains(info, "node_name:e2e") {
		t.Fatalf("INFO server = %q, %v", info, err)
	}
	// The node shuts down cleanly on SIGTERM.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
	}
}

// TestNcBytes sends what a person types into nc, byte for byte, and checks
// the exact bytes that come back.
func TestNcBytes(t *testing.T) {
	p := startNode(t, t.TempDir())
	conn, err := net.Dial("tcp", p.clientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	send := "SET greeting hello\nGET greeting\r\nINCR visits\nVGET greeting\nEXISTS greeting nope\nGET nope\nQUIT\n"
	if _, err := conn.Write([]byte(send)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn) // QUIT closes the connection
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\+OK\r\n\$5\r\nhello\r\n:1\r\n\*2\r\n\$(\d+)\r\n[A-Za-z0-9_-]+\r\n\$5\r\nhello\r\n:1\r\n\$-1\r\n\+OK\r\n$`)
	if !re.Match(got) {
		t.Fatalf("nc session replied %q", got)
	}
	// A protocol error closes that connection only.
	bad, err := net.Dial("tcp", p.clientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.SetDeadline(time.Now().Add(10 * time.Second))
	bad.Write([]byte("*1\r\n$999999999999\r\n"))
	reply, _ := io.ReadAll(bad)
	if !strings.HasPrefix(string(reply), "-ERR Protocol error:") || !strings.Contains(string(reply), "max-bulk") {
		t.Fatalf("oversized bulk: %q", reply)
	}
	c := redis.NewClient(&redis.Options{Addr: p.clientAddr})
	defer c.Close()
	if v, err := c.Get(context.Background(), "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("after another client's protocol error: %q, %v", v, err)
	}
}

func TestHTTPAgainstBinary(t *testing.T) {
	p := startNode(t, t.TempDir())
	base := "http://" + p.httpAddr
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, _ := do("PUT", "/kv/mykey", `"myvalue"`); code != 204 {
		t.Fatalf("PUT = %d", code)
	}
	if code, body := do("GET", "/kv/mykey", ""); code != 200 || body != `{"value":"myvalue"}` {
		t.Fatalf("GET = %d %s", code, body)
	}
	if code, _ := do("DELETE", "/kv/mykey", ""); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	if code, body := do("GET", "/kv/mykey", ""); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("GET after DELETE = %d %s", code, body)
	}
	if code, body := do("GET", "/health", ""); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("health = %d %s", code, body)
	}
	code, body := do("GET", "/metrics", "")
	for _, want := range []string{`rumor_requests_total{command="get",protocol="http"} 2`, "rumor_request_duration_seconds_bucket", "rumor_store_disk_bytes"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q (status %d)", want, code)
		}
	}
}

// TestAcknowledgedWritesSurviveSIGKILL kills the node with SIGKILL in the
// middle of a stream of writes from many connections, restarts it, and
// checks that every acknowledged write is there, over several rounds on the
// same data directory.
func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	dir := t.TempDir()
	type ack struct{ key, val string }
	var acked []ack
	var counterAcked, counterTried int64
	for round := 0; round < rounds; round++ {
		// Small memtables: pebble makes a new log every few thousand
		// writes, each one from a spare (see below), so a round may be
		// killed while pebble switches logs.
		p := startNode(t, dir, "--memtable-size", "1MB")
		var mu sync.Mutex
		var wg sync.WaitGroup
		var ackedThisRound atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := redis.NewClient(&redis.Options{Addr: p.clientAddr, MaxRetries: -1, PoolSize: 1})
				defer c.Close()
				for i := 0; ctx.Err() == nil; i++ {
					k, v := fmt.Sprintf("r%d:w%d:%d", round, w, i), fmt.Sprintf("v%d", i)
					if c.Set(ctx, k, v, 0).Err() != nil {
						return
					}
					mu.Lock()
					acked = append(acked, ack{k, v})
					mu.Unlock()
					atomic.AddInt64(&counterTried, 1)
					if c.Incr(ctx, "counter").Err() != nil {
						return
					}
					atomic.AddInt64(&counterAcked, 1)
					ackedThisRound.Add(1)
				}
			}()
		}
		// Kill once a few hundred writes were acknowledged in this round
		// and pebble writes a log made from a spare (zero-filled ahead of
		// time, store/walspare.go), whose zeros after the last record
		// recovery must read as its end.
		overSpare := func() bool { return spareLogs(p) > 0 }
		for deadline := time.Now().Add(20 * time.Second); (ackedThisRound.Load() < 300 || !overSpare()) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if !overSpare() {
			t.Errorf("round %d: no write-ahead log made from a spare after %d writes", round, ackedThisRound.Load())
		}
		p.kill()
		cancel()
		wg.Wait()
	}
	p := startNode(t, dir)
	c := redis.NewClient(&redis.Options{Addr: p.clientAddr})
	defer c.Close()
	ctx := context.Background()
	lost := 0
	for _, a := range acked {
		v, err := c.Get(ctx, a.key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if v != a.val {
			lost++
			if lost < 10 {
				t.Errorf("acknowledged SET %s %s, read %q after SIGKILL", a.key, a.val, v)
			}
		}
	}
	n, err := c.Get(ctx, "counter").Int64()
	if err != nil {
		t.Fatal(err)
	}
	info := c.Info(ctx, "persistence").Val()
	if !strings.Contains(info, "recovered_from_crash:yes") {
		t.Errorf("after SIGKILL the node did not take a new actor id:\n%s", info)
	}
	// These rounds trusted Linux AIO's fsync where the kernel has it
	// (store/fsync_linux.go; /proc/sys/fs/aio-max-nr exists with
	// CONFIG_AIO), the system call elsewhere.
	want := "syscall"
	if _, err := os.Stat("/proc/sys/fs/aio-max-nr"); err == nil && runtime.GOOS == "linux" {
		want = "aio"
	}
	if got := infoField(info, "fsync"); got != want {
		t.Errorf("INFO persistence fsync = %q, want %q:\n%s", got, want, info)
	}
	t.Logf("%d rounds: %d acknowledged SETs, %d lost; counter %d (acknowledged %d, attempted %d)",
		rounds, len(acked), lost, n, counterAcked, counterTried)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	if n < counterAcked || n > counterTried {
		t.Fatalf("counter = %d, want between %d acknowledged and %d attempted increments", n, counterAcked, counterTried)
	}
}

func TestHelpDocumentsEveryFlagAndItsEnvVar(t *testing.T) {
	out, err := exec.Command(binary, "node", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range nodeCommand().Flags {
		name := f.Names()[0]
		dashes := "--"
		if len(name) == 1 {
			dashes = "-" // urfave/cli shows one-letter flags as -w; --w works too
		}
		if !strings.Contains(string(out), dashes+name+" ") || !strings.Contains(string(out), env(name)[0]) {
			t.Errorf("--help lacks --%s or %s", name, env(name)[0])
		}
	}
	// Bad flags are refused with a clear error.
	for _, args := range [][]string{{"--partitions", "1000"}, {"--cache-size", "lots"}, {"--log-level", "loud"}} {
		cmd := exec.Command(binary, append([]string{"node", "--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--http-addr", "-"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "rumor:") {
			t.Errorf("rumor node %v: err=%v out=%s", args, err, out)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MB": 64 << 20, "1gb": 1 << 30, "10k": 10000, "512": 512, " 2 MiB ": 2 << 20, "3b": 3} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MB", "1.5GB", "99999999999999999999", "9000000000gb"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

// TestRedisToolsAgainstBinary runs the real redis-cli and redis-benchmark
// against the binary: they must connect and run without an error or a
// warning. CI installs them (.ci/run); elsewhere the test is skipped when
// they are missing.
func TestRedisToolsAgainstBinary(t *testing.T) {
	for _, tool := range []string{"redis-cli", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing in CI: .ci/run should install redis-tools", tool)
			}
			t.Skipf("%s not installed (apt-get install redis-tools)", tool)
		}
	}
	p := startNode(t, t.TempDir())
	_, port, _ := net.SplitHostPort(p.clientAddr)
	cli := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("redis-cli", append([]string{"-p", port}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := cli("", "SET", "greeting", "hello"); out != "OK\n" {
		t.Fatalf("redis-cli SET: %q", out)
	}
	if out := cli("", "GET", "greeting"); out != "hello\n" {
		t.Fatalf("redis-cli GET: %q", out)
	}
	if out := cli("INCR visits\nINCR visits\nGET visits\n"); out != "1\n2\n2\n" {
		t.Fatalf("redis-cli reading commands from stdin: %q", out)
	}
	if out := cli("", "INFO", "server"); !strings.Contains(out, "rumor_version:") {
		t.Fatalf("redis-cli INFO: %q", out)
	}
	cmd := exec.Command("redis-benchmark", "-p", port, "-t", "ping,set,get,incr", "-n", "3000", "-c", "10", "-r", "1000", "--csv")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	for _, bad := range []string{"WARN", "Error", "ERR"} {
		if strings.Contains(string(out), bad) {
			t.Fatalf("redis-benchmark reported %q:\n%s", bad, out)
		}
	}
	for _, test := range []string{`"SET"`, `"GET"`, `"INCR"`, `"PING_MBULK"`} {
		if !strings.Contains(string(out), test) {
			t.Fatalf("redis-benchmark did not run %s:\n%s", test, out)
		}
	}
}

// TestThreeNodeClusterOfProcesses runs three nodes as separate processes:
// a write through one is read through the others, and with one node
// SIGKILLed, W=2 writes and R=2 reads still succeed while a W=3 write fails
// with the quorum error.
func TestThreeNodeClusterOfProcesses(t *testing.T) {
	dir := t.TempDir()
	var nodes []*proc
	for i := 1; i <= 3; i++ {
		args := []string{"--name", fmt.Sprint("n", i), "--gossip-addr", "127.0.0.1:0", "--request-timeout", "2s"}
		if i > 1 {
			args = append(args, "--join", nodes[0].gossipAddr)
		}
		if i == 3 {
			args = append(args, "--sloppy=false", "--read-repair-chance=0")
		}
		nodes = append(nodes, startNode(t, filepath.Join(dir, fmt.Sprint("n", i)), args...))
	}
	clients := make([]*redis.Client, 3)
	for i, p := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: p.clientAddr, MaxRetries: -1})
		defer clients[i].Close()
	}
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range clients { // every node sees every member
		for !strings.Contains(c.Info(ctx, "cluster").Val(), "members_alive:3") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster did not form:\n%s", c.Info(ctx, "cluster").Val())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, want := range []string{"sloppy_quorum:1", "sloppy_quorum:1", "sloppy_quorum:0", "read_repair_chance:0.1", "read_repair_chance:0.1", "read_repair_chance:0"} {
		if info := clients[i%3].Info(ctx, "cluster").Val(); !strings.Contains(info, want+"\r\n") {
			t.Fatalf("n%d (--sloppy=false --read-repair-chance=0 on n3 only): no %s in\n%s", i%3+1, want, info)
		}
	}
	if err := clients[0].Set(ctx, "user:1", "alice", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if v, err := c.Get(ctx, "user:1").Result(); err != nil || v != "alice" {
			t.Fatalf("GET through n%d = %q, %v", i+1, v, err)
		}
	}
	// With every node up, every replica ends up with every write, stragglers
	// included (a copy that arrives after the quorum answered): a burst of
	// concurrent writes through n3 leaves the same object on all three.
	// n3 reads without read repair (--read-repair-chance=0), and a read
	// with R 1 never repairs the node it reads, so each comparison sees
	// what replication alone left there.
	var burst sync.WaitGroup
	const burstKeys = 50
	for g := range 16 {
		burst.Add(1)
		go func() {
			defer burst.Done()
			for i := range 60 {
				if err := clients[2].Set(ctx, fmt.Sprint("burst:", (g*7+i)%burstKeys), fmt.Sprint(g, "-", i), 0).Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	burst.Wait()
	local := func(c *redis.Client, k string) string {
		return fmt.Sprint(c.Do(ctx, "VGET", k, "R", "1").Val())
	}
	deadline = time.Now().Add(10 * time.Second)
	for k := range burstKeys {
		key := fmt.Sprint("burst:", k)
		for {
			want := local(clients[2], key)
			a, b := local(clients[0], key), local(clients[1], key)
			if a == want && b == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replicas of %s differ after a burst with every node up: n1 %s, n2 %s, n3 %s", key, a, b, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A pipeline's writes wait for their quorums together (the
	// coordinator replicates them concurrently) and still apply in the
	// client's order: after it, W=2 replicas hold each key's last write.
	pipe := clients[0].Pipeline()
	const pipeKeys, rounds = 20, 5
	for r := range rounds {
		for k := range pipeKeys {
			pipe.Set(ctx, fmt.Sprint("pipe:", k), fmt.Sprint("v", r), 0)
		}
		pipe.Incr(ctx, "pipe:count")
	}
	last := pipe.Get(ctx, fmt.Sprint("pipe:", pipeKeys-1))
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	for i, cmd := range cmds {
		if cmd.Err() != nil {
			t.Fatalf("pipeline command %d (%v): %v", i, cmd.Args(), cmd.Err())
		}
	}
	if v := cmds[len(cmds)-2].(*redis.IntCmd).Val(); v != rounds {
		t.Fatalf("the pipeline's last INCR returned %d, want %d", v, rounds)
	}
	if v := last.Val(); v != fmt.Sprint("v", rounds-1) {
		t.Fatalf("GET at the end of the pipeline: %q", v)
	}
	for k := range pipeKeys {
		key, want := fmt.Sprint("pipe:", k), fmt.Sprint("v", rounds-1)
		holders := 0
		for _, c := range clients {
			// VGET: the context token, then the siblings.
			if vals, _ := c.Do(ctx, "VGET", key, "R", "1").Slice(); len(vals) == 2 && vals[1] == want {
				holders++
			}
		}
		if holders < 2 {
			t.Fatalf("after the pipeline, %d replicas hold %s = %s alone, want at least W=2", holders, key, want)
		}
	}
	// A pipeline larger than the server's read buffer: the reader parses
	// later commands over the bytes of earlier ones while their copies are
	// still being sent, so every replica's own copy is checked, not just a
	// quorum read (a bug once sent another key's value to the replicas).
	big := clients[0].Pipeline()
	const bigKeys = 3000
	bigValue := func(k int) string { return fmt.Sprintf("%s-%05d", strings.Repeat("x", 80), k) }
	for k := range bigKeys {
		big.Set(ctx, fmt.Sprint("big:", k), bigValue(k), 0)
	}
	if _, err := big.Exec(ctx); err != nil {
		t.Fatalf("large pipeline: %v", err)
	}
	for k := 0; k < bigKeys; k += 37 {
		key := fmt.Sprint("big:", k)
		deadline := time.Now().Add(10 * time.Second)
		for i, c := range clients {
			for {
				vals, err := c.Do(ctx, "VGET", key, "R", "1").Slice()
				if err == nil && len(vals) == 2 && vals[1] == bigValue(k) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after a large pipeline, n%d's own copy of %s is %v, %v; want %s", i+1, key, vals, err, bigValue(k))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// A node with another partition count is refused, saying why.
	odd := exec.Command(binary, "node", "--name", "odd", "--data-dir", filepath.Join(dir, "odd"), "--partitions", "8192",
		"--client-addr", "127.0.0.1:0", "--http-addr", "-", "--gossip-addr", "127.0.0.1:0", "--join", nodes[0].gossipAddr)
	out, err := odd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "partition count is fixed") {
		t.Fatalf("a node with Q=8192 joining a Q=%d cluster: %v\n%s", 16384, err, out)
	}
	nodes[1].kill()
	if err := clients[0].Set(ctx, "user:2", "bob", 0).Err(); err != nil {
		t.Fatalf("W=2 write with one node killed: %v", err)
	}
	if v, err := clients[2].Get(ctx, "user:2").Result(); err != nil || v != "bob" {
		t.Fatalf("R=2 read with one node killed: %q, %v", v, err)
	}
	err = clients[0].Do(ctx, "SET", "user:3", "carol", "W", "3").Err()
	if err == nil || !strings.Contains(err.Error(), "quorum not reached for write: 2 of 3") {
		t.Fatalf("W=3 write with one node killed: %v", err)
	}
	// In a pipeline, the write that misses its quorum gets the error as
	// its own reply, and the others are answered as usual.
	pipe = clients[0].Pipeline()
	a := pipe.Set(ctx, "user:4", "dave", 0)
	w3 := pipe.Do(ctx, "SET", "user:5", "erin", "W", "3")
	c := pipe.Set(ctx, "user:6", "frank", 0)
	g := pipe.Get(ctx, "user:6")
	pipe.Exec(ctx)
	if a.Err() != nil || c.Err() != nil || g.Val() != "frank" {
		t.Fatalf("pipeline around a failing write: %v, %v, GET %q %v", a.Err(), c.Err(), g.Val(), g.Err())
	}
	if err := w3.Err(); err == nil || !strings.Contains(err.Error(), "quorum not reached for write: 2 of 3") {
		t.Fatalf("W=3 write in a pipeline with one node killed: %v", err)
	}
}

// freeBase finds a base port whose cluster ports (P.., P+100.., P+200..,
// P+300.. for n nodes) are all free right now.
// clusterCmd runs `rumor cluster ARGS --dir DIR` and returns its output.
func clusterCmd(dir string, args ...string) (string, error) {
	out, err := exec.Command(binary, append([]string{"cluster"}, append(args, "--dir", dir)...)...).CombinedOutput()
	return string(out), err
}

// mustCluster is clusterCmd that fails the test if the command fails.
func mustCluster(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := clusterCmd(dir, args...)
	if err != nil {
		t.Fatalf("rumor cluster %v: %v\n%s", args, err, out)
	}
	return out
}

func freeBase(t *testing.T, n int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for try := 0; try < 50; try++ {
		// Below Linux's ephemeral ports (32768 and up by default), which
		// the tests' own client connections take: one could land on a
		// node's port between this check and the node's bind.
		base := 10000 + rng.IntN(22000)
		ok := true
		for off := 0; off <= 300 && ok; off += 100 {
			for i := 0; i < n+1 && ok; i++ {
				addr := fmt.Sprintf("127.0.0.1:%d", base+off+i)
				l, err := net.Listen("tcp", addr)
				if err != nil {
					ok = false
					break
				}
				l.Close()
				if off == 200 { // gossip: UDP too
					u, err := net.ListenPacket("udp", addr)
					if err != nil {
						ok = false
						break
					}
					u.Close()
				}
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

// TestLocalClusterCommand drives `rumor cluster` as a user would: up, write
// through one node and read through another, kill one, check W=2 and R=2
// still work and W=3 fails with the quorum error, restart it and see it
// rejoin, add a node, and bring everything down.
func TestLocalClusterCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := freeBase(t, 3)
	run := func(args ...string) string {
		t.Helper()
		return mustCluster(t, dir, args...)
	}
	t.Cleanup(func() {
		exec.Command(binary, "cluster", "down", "--dir", dir).Run()
	})
	out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--nodes", "3",
		"--node-arg=--request-timeout=2s").CombinedOutput()
	if err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "n3") || len(regexp.MustCompile(`alive +all alive +none`).FindAll(out, -1)) != 3 {
		t.Fatalf("cluster up printed:\n%s", out)
	}
	client := func(i int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base+i-1), MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c3 := client(1), client(3)
	ctx := context.Background()
	// Without --procs, the nodes share this machine's CPUs.
	share := shareProcs(runtime.NumCPU(), 3)
	for i := 1; i <= 3; i++ {
		if p := infoProcs(t, client(i)); p != share {
			t.Errorf("n%d runs with procs:%d, want its share %d of %d CPUs", i, p, share, runtime.NumCPU())
		}
	}
	// The nodes hold the cluster key up made, given them through their
	// environment: not on their command lines, which every user can read,
	// and in a state file only its owner can.
	var st clusterState
	stateFile := filepath.Join(dir, "cluster.json")
	if b, err := os.ReadFile(stateFile); err != nil || json.Unmarshal(b, &st) != nil || len(st.Key) < 32 {
		t.Fatalf("cluster.json: no cluster key (%v)", err)
	}
	if fi, err := os.Stat(stateFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cluster.json holds the key with mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	for i, nd := range st.Nodes {
		if info, err := client(i+1).Info(context.Background(), "cluster").Result(); err != nil || !strings.Contains(info, "cluster_key:set") {
			t.Errorf("%s: INFO cluster has no cluster_key:set (%v)", nd.Name, err)
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", nd.PID)); err != nil || bytes.Contains(cmdline, []byte(st.Key)) {
			t.Errorf("%s: its command line shows the cluster key (%v)", nd.Name, err)
		}
	}
	if err := c1.Set(ctx, "user:1", "alice", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c3.Get(ctx, "user:1").Result(); err != nil || v != "alice" {
		t.Fatalf("GET through n3: %q, %v", v, err)
	}
	run("kill", "n2")
	if err := c1.Set(ctx, "user:2", "bob", 0).Err(); err != nil {
		t.Fatalf("W=2 with n2 killed: %v", err)
	}
	if v, err := c3.Get(ctx, "user:2").Result(); err != nil || v != "bob" {
		t.Fatalf("R=2 with n2 killed: %q, %v", v, err)
	}
	if err := c1.Do(ctx, "SET", "user:3", "carol", "W", "3").Err(); err == nil || !strings.Contains(err.Error(), "2 of 3 required replicas") {
		t.Fatalf("W=3 with n2 killed: %v", err)
	}
	// Gossip sees the killed node as failed within a few seconds.
	killed := time.Now()
	for !strings.Contains(c1.Info(ctx, "cluster").Val(), "member_n2:status=failed") {
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("n2 not seen failed 20s after SIGKILL:\n%s", c1.Info(ctx, "cluster").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a SIGKILLed node was seen failed by gossip after %v", time.Since(killed).Round(100*time.Millisecond))
	run("start", "n2")
	waitAllAlive := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var status struct {
				Nodes []struct {
					Name  string `json:"name"`
					State string `json:"state"`
				} `json:"nodes"`
			}
			json.Unmarshal([]byte(run("status", "--json")), &status)
			rows := status.Nodes
			alive := 0
			for _, r := range rows {
				if r.State == "alive" {
					alive++
				}
			}
			if alive == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v", what, rows)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitAllAlive("n2 did not rejoin")
	if v, err := client(2).Get(ctx, "user:2").Result(); err != nil || v != "bob" {
		t.Fatalf("GET through the restarted n2: %q, %v", v, err)
	}
	// A node restarts while the node it first joined through (n1, its
	// --join) is down: it rejoins through its snapshot, by whichever member
	// is up. And two commands at once on the cluster (each takes the
	// directory's lock) both take effect.
	run("stop", "n1")
	run("stop", "n3")
	both := make(chan string, 2)
	for _, n := range []string{"n3", "n1"} {
		go func() {
			out, err := clusterCmd(dir, "start", n)
			both <- fmt.Sprintf("start %s: %v %s", n, err, out)
		}()
	}
	for range 2 {
		if out := <-both; !strings.Contains(out, "<nil>") {
			t.Fatalf("%s", out)
		}
	}
	waitAllAlive("n1 and n3 did not both rejoin, started together with n1 (n3's --join) down")
	if out := run("add"); !strings.Contains(out, "n4 added") {
		t.Fatalf("cluster add: %s", out)
	}
	if err := client(4).Set(ctx, "user:4", "dave", 0).Err(); err != nil {
		t.Fatalf("SET through the added n4: %v", err)
	}
	if p := infoProcs(t, client(4)); p != share {
		t.Errorf("the added n4 runs with procs:%d, want the others' %d", p, share)
	}
	// Removing a running node: it leaves and exits, the others see it left,
	// and writes go on among the rest.
	run("remove", "n4")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(c1.Info(ctx, "cluster").Val(), "member_n4:status=left"); {
		if time.Now().After(deadline) {
			t.Fatalf("n4 not seen left:\n%s", c1.Info(ctx, "cluster").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c1.Set(ctx, "user:5", "erin", 0).Err(); err != nil {
		t.Fatalf("SET after removing n4: %v", err)
	}
	// Removing a killed node: a live member forgets it. Here n3 is also
	// missing from cluster.json, as a node of a bigger cluster that ran on
	// this directory before is (`cluster up --nodes 3` over the data of 5):
	// its data still counts it a member, and remove still removes it.
	run("kill", "n3")
	var st3 clusterState
	if b, err := os.ReadFile(stateFile); err != nil || json.Unmarshal(b, &st3) != nil {
		t.Fatalf("cluster.json: %v", err)
	}
	st3.Nodes = slices.DeleteFunc(st3.Nodes, func(n *clusterNode) bool { return n.Name == "n3" })
	if err := st3.save(dir); err != nil {
		t.Fatal(err)
	}
	if out := run("remove", "n3"); !strings.Contains(out, "was not one of") {
		t.Errorf("cluster remove of a member not in cluster.json printed %q", out)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(c1.Info(ctx, "cluster").Val(), "member_n3:status=left"); {
		if time.Now().After(deadline) {
			t.Fatalf("n3 not seen left:\n%s", c1.Info(ctx, "cluster").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A name no node knows is an error.
	if out, err := exec.Command(binary, "cluster", "remove", "ghost", "--dir", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), `no node "ghost"`) {
		t.Errorf("cluster remove of an unknown node: %v\n%s", err, out)
	}
	// `up` over a cluster.json it cannot read, or none, while nodes run
	// there: refused, the nodes untouched (it wrote a new cluster.json and
	// started nodes that failed on the locked directories, and `down`
	// then left the running ones running).
	saved, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		name, want string
		do         func() error
	}{
		{"truncated", "cannot be read", func() error { return os.WriteFile(stateFile, saved[:len(saved)/2], 0o600) }},
		{"removed", "a node is running on", func() error { return os.Remove(stateFile) }},
	} {
		if err := damage.do(); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(freeBase(t, 3))).CombinedOutput()
		if err == nil || !strings.Contains(string(out), damage.want) {
			t.Errorf("cluster up over a %s cluster.json with nodes running: %v\n%s", damage.name, err, out)
		}
		if err := os.WriteFile(stateFile, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c1.Ping(ctx).Err(); err != nil {
			t.Fatalf("n1 after cluster up over a %s cluster.json: %v", damage.name, err)
		}
	}
	run("down")
	if err := c1.Ping(ctx).Err(); err == nil {
		t.Fatal("n1 still answers after cluster down")
	}
}

// spareLogs returns how many write-ahead logs p's store made from spares
// (rumor_store_wal_logs_created_total{from="spare"}), 0 if it cannot tell.
func spareLogs(p *proc) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, `rumor_store_wal_logs_created_total{from="spare"} `); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// infoServer returns node p's INFO server.
func infoServer(t *testing.T, p *proc) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: p.clientAddr})
	defer c.Close()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// infoField returns the value of field in an INFO reply, or "".
func infoField(info, field string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(field) + `:(.*?)\r?$`).FindStringSubmatch(info)
	if m == nil {
		return ""
	}
	return m[1]
}

// infoProcs returns the procs field of a node's INFO server.
func infoProcs(t *testing.T, c *redis.Client) int {
	t.Helper()
	info := c.Info(context.Background(), "server").Val()
	m := regexp.MustCompile(`(?m)^procs:(\d+)\r?$`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("no procs in INFO server:\n%s", info)
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// clusterStatusJSON is what `rumor cluster status --json` prints.
type clusterStatusJSON struct {
	Faults struct {
		Summary string `json:"summary"`
	} `json:"faults"`
	Nodes []struct {
		Name   string            `json:"name"`
		State  string            `json:"state"`
		View   map[string]string `json:"view"`
		Faults *struct {
			Enabled bool              `json:"enabled"`
			Blocked []string          `json:"blocked"`
			Delays  map[string]string `json:"delays"`
		} `json:"faults"`
	} `json:"nodes"`
}

// TestClusterFaults drives `rumor cluster partition|isolate|delay|heal`
// on three processes: bad arguments are refused with clear errors; a
// partition shows in status as each node reports it, the majority side
// sees the cut-off node failed and still reaches W=2 while the minority
// cannot; a restarted node gets its faults again; a heal brings every
// view back to all alive; a delay slows writes; and a node started
// without --allow-faults refuses, with nothing changed.
func TestClusterFaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := freeBase(t, 3)
	cluster := func(args ...string) (string, error) { return clusterCmd(dir, args...) }
	run := func(args ...string) string {
		t.Helper()
		return mustCluster(t, dir, args...)
	}
	status := func() clusterStatusJSON {
		t.Helper()
		var s clusterStatusJSON
		if err := json.Unmarshal([]byte(run("status", "--json")), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Cleanup(func() { exec.Command(binary, "cluster", "down", "--dir", dir).Run() })
	if out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--nodes", "3",
		"--procs", "3", "--node-arg=--request-timeout=1s", "--node-arg=--procs=2").CombinedOutput(); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	client := func(i int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base+i-1), MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := client(1), client(2)
	ctx := context.Background()
	if p := infoProcs(t, c2); p != 2 {
		t.Errorf("n2 runs with procs:%d; a --node-arg=--procs=2 must win over cluster up --procs 3", p)
	}

	for _, tc := range []struct{ args, want string }{
		{"partition", "name the groups"},
		{"partition n1,n9 n2", `no node "n9" in the cluster (nodes: n1, n2, n3)`},
		{"partition n1,n2 n2,n3", `n2 is in two groups, "n1,n2" and "n2,n3"`},
		{"partition n1,n2,n3", "nothing to partition"},
		{"isolate", "name one node to isolate"},
		{"isolate n7", `no node "n7"`},
		{"delay n2", "name a node and a duration"},
		{"delay n2 -1s", "negative"},
		{"heal now", "heal takes no arguments"},
	} {
		out, err := cluster(strings.Fields(tc.args)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("rumor cluster %s: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
	}
	if s := status(); s.Faults.Summary != "none" {
		t.Fatalf("refused commands changed the faults: %+v", s.Faults)
	}

	out := run("partition", "n1", "n2,n3")
	if !strings.Contains(out, "n1: blocks n2,n3") || !strings.Contains(out, "n2: blocks n1") {
		t.Fatalf("partition printed:\n%s", out)
	}
	partitioned := time.Now()
	var s clusterStatusJSON
	for {
		s = status()
		if s.Nodes[1].View["n1"] == "failed" && s.Nodes[2].View["n1"] == "failed" {
			break
		}
		if time.Since(partitioned) > 20*time.Second {
			t.Fatalf("n2 and n3 do not see n1 failed 20s after the partition: %+v", s.Nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("partition n1 | n2,n3: n2 and n3 saw n1 failed after %v", time.Since(partitioned).Round(100*time.Millisecond))
	if s.Faults.Summary != "partition n1 | n2,n3" || s.Nodes[0].State != "failed" {
		t.Fatalf("status: %+v, n1 %s", s.Faults, s.Nodes[0].State)
	}
	for i, want := range []string{"[n2 n3]", "[n1]", "[n1]"} {
		if f := s.Nodes[i].Faults; f == nil || !f.Enabled || fmt.Sprint(f.Blocked) != want {
			t.Fatalf("n%d reports faults %+v, want blocked %s", i+1, f, want)
		}
	}
	if text := run("status"); !regexp.MustCompile(`(?m)^n2 .* n1 failed +blocks n1$`).MatchString(text) || !strings.Contains(text, "faults: partition n1 | n2,n3") {
		t.Fatalf("status:\n%s", text)
	}
	// Every key has all three nodes as replicas: n2 and n3 make W=2, n1
	// alone does not.
	if err := c2.Set(ctx, "during", "partition", 0).Err(); err != nil {
		t.Fatalf("W=2 write on the majority side: %v", err)
	}
	if err := c1.Set(ctx, "lonely", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "quorum not reached") {
		t.Fatalf("W=2 write on the cut-off n1: %v", err)
	}

	// A restarted node forgets its faults; start applies them again.
	run("kill", "n1")
	if out := run("start", "n1"); !strings.Contains(out, "n1: blocks n2,n3") {
		t.Fatalf("start during a partition printed:\n%s", out)
	}
	if s := status(); s.Nodes[0].Faults == nil || fmt.Sprint(s.Nodes[0].Faults.Blocked) != "[n2 n3]" {
		t.Fatalf("the restarted n1 reports %+v", s.Nodes[0].Faults)
	}

	run("heal")
	healed := time.Now()
	for {
		s = status()
		alive := 0
		for _, n := range s.Nodes {
			for _, st := range n.View {
				if st == "alive" {
					alive++
				}
			}
		}
		if alive == 9 {
			break
		}
		if time.Since(healed) > 20*time.Second {
			t.Fatalf("not all alive 20s after heal: %+v", s.Nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("heal: every node saw all alive after %v", time.Since(healed).Round(100*time.Millisecond))
	if err := c1.Do(ctx, "SET", "after", "heal", "W", "3").Err(); err != nil {
		t.Fatalf("W=3 write after heal: %v", err)
	}
	if v, err := c1.Get(ctx, "during").Result(); err != nil || v != "partition" {
		t.Fatalf("GET through n1 of a write made during the partition: %q, %v", v, err)
	}

	// A delay on n2 holds back its calls to the others: a write it
	// coordinates waits for one of them (W=2).
	run("delay", "n2", "200ms")
	s = status()
	if s.Faults.Summary != "delay n2 200ms" || fmt.Sprint(s.Nodes[1].Faults.Delays) != "map[*:200ms]" || fmt.Sprint(s.Nodes[0].Faults.Delays) != "map[n2:200ms]" {
		t.Fatalf("delay: %+v, n1 %+v, n2 %+v", s.Faults, s.Nodes[0].Faults, s.Nodes[1].Faults)
	}
	start := time.Now()
	if err := c2.Set(ctx, "slow", "v", 0).Err(); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("SET through the delayed n2: %v after %v, want at least 200ms", err, time.Since(start))
	}
	run("delay", "n2", "0")
	if s := status(); s.Faults.Summary != "none" || len(s.Nodes[1].Faults.Delays) != 0 {
		t.Fatalf("after delay n2 0: %+v %+v", s.Faults, s.Nodes[1].Faults)
	}

	// A command whose output goes nowhere (`rumor cluster delay ... | head
	// -1`) still applies its faults to every node: Go's default exit on a
	// write to a closed pipe once stopped it after n1, with cluster.json
	// already saying every node had them.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	cmd := exec.Command(binary, "cluster", "delay", "n2", "5ms", "--dir", dir)
	cmd.Stdout, cmd.Stderr = pw, pw
	runErr := cmd.Run()
	pw.Close()
	if s := status(); fmt.Sprint(s.Nodes[0].Faults.Delays, s.Nodes[1].Faults.Delays, s.Nodes[2].Faults.Delays) != "map[n2:5ms] map[*:5ms] map[n2:5ms]" {
		t.Errorf("delay n2 5ms with its output closed (%v): n1 %v, n2 %v, n3 %v", runErr, s.Nodes[0].Faults.Delays, s.Nodes[1].Faults.Delays, s.Nodes[2].Faults.Delays)
	}
	run("delay", "n2", "0")

	// A copy that leaves after the quorum answered still goes under its own
	// key: with n3 delayed, n1's copies to it start after n2 answered and
	// the next SET has arrived on the same connection, in the same place of
	// the read buffer. (They went under the next command's key once.)
	run("delay", "n3", "30ms")
	for i := range 10 {
		if err := c1.Set(ctx, fmt.Sprint("late:", i), fmt.Sprint("v", i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	run("delay", "n3", "0")
	c3 := client(3)
	deadline := time.Now().Add(10 * time.Second)
	for i := range 10 {
		key, want := fmt.Sprint("late:", i), fmt.Sprint("[", "v", i, "]")
		for {
			reply, err := c3.Do(ctx, "VGET", key, "R", "1").Slice()
			got := "[]"
			if err == nil && len(reply) > 1 {
				got = fmt.Sprint(reply[1:])
			}
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n3's own copy of %s is %s, want %s", key, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A node started without --allow-faults refuses PUT /faults...
	plain := startNode(t, t.TempDir(), "--name", "plain")
	req, _ := http.NewRequest("PUT", "http://"+plain.httpAddr+"/faults", strings.NewReader(`{"blocked":["n1"]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "faults are disabled on this node; start it with --allow-faults") {
		t.Fatalf("PUT /faults without --allow-faults: %d %s", resp.StatusCode, body)
	}
	// ...and `rumor cluster` refuses before changing anything.
	other := t.TempDir()
	st := fmt.Sprintf(`{"base_port":1,"nodes":[{"name":"plain","pid":%d,"client_addr":%q,"http_addr":%q},{"name":"gone","pid":0}]}`,
		plain.cmd.Process.Pid, plain.clientAddr, plain.httpAddr)
	if err := os.WriteFile(filepath.Join(other, "cluster.json"), []byte(st), 0o644); err != nil {
		t.Fatal(err)
	}
	out2, err := exec.Command(binary, "cluster", "isolate", "gone", "--dir", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "plain: faults are disabled on this node; start it with --allow-faults") {
		t.Fatalf("isolate on a cluster with a node without --allow-faults: %v\n%s", err, out2)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "cluster.json")); string(b) != st {
		t.Fatalf("a refused command rewrote cluster.json:\n%s", b)
	}
}

// TestClusterUpRefusesBadArguments: rumor cluster up checks its numbers
// before it starts anything, and says which one is wrong.
func TestClusterUpRefusesBadArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "--nodes must be between 1 and 100"},
		{[]string{"--nodes", "101"}, "--nodes must be between 1 and 100"},
		{[]string{"--base-port", "80"}, "base-port"},
		{[]string{"--base-port", "65500", "--nodes", "3"}, "base-port"},
		{[]string{"--procs", "-1"}, "--procs must not be negative"},
		{[]string{"--procs", "many"}, "procs"},
	} {
		out, err := clusterCmd(dir, append([]string{"up"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("rumor cluster up %v: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused cluster up left state behind: %v", err)
	}
}

// TestSecondNodeOnADataDirectoryIsRefused: a node started on the data
// directory of a running one exits with an error that says the directory
// is locked by another process (not pebble's bare "resource temporarily
// unavailable"), and the running node keeps its data and keeps serving.
func TestSecondNodeOnADataDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	first := startNode(t, dir)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: first.clientAddr})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Bounded: a second node that wrongly started would serve forever.
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(octx, binary, "node", "--name", "second", "--data-dir", dir,
		"--client-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil {
		t.Fatalf("a second node on the same data directory started:\n%s", out)
	}
	if !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("second node's error does not say the directory is locked:\n%s", out)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("the first node after the refused second: GET k = %q, %v", v, err)
	}
}

// TestClusterUpReportsANodeThatExits: when a node exits while cluster up
// waits for the members to see each other (here n2, whose data directory
// was made with another partition count), cluster up fails at once with
// that node's own words, instead of waiting out its minute for a member
// that will never join. (The SIGTERM sent as soon as the node that made
// n2's directory logged its start must shut it down cleanly: it once
// came before the node listened for signals, and ended it in its tracks.)
func TestClusterUpReportsANodeThatExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := startNode(t, filepath.Join(dir, "n2"), "--partitions", "64")
	old.cmd.Process.Signal(syscall.SIGTERM)
	if err := old.wait(t, 30*time.Second); err != nil {
		t.Fatalf("the node that made n2's directory: %v\n%s", err, old.stderr)
	}
	base := freeBase(t, 3)
	t.Cleanup(func() { exec.Command(binary, "cluster", "down", "--dir", dir).Run() })
	start := time.Now()
	out, err := exec.Command(binary, "cluster", "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--nodes", "3").CombinedOutput()
	took := time.Since(start)
	if err == nil {
		t.Fatalf("cluster up succeeded with n2's directory of another partition count:\n%s", out)
	}
	if !strings.Contains(string(out), "n2 exited") || !strings.Contains(string(out), "another partition count") {
		t.Fatalf("cluster up did not say that n2 exited, and why:\n%s", out)
	}
	if took > 30*time.Second {
		t.Fatalf("cluster up took %v to give up on a node that had exited", took)
	}
}

// TestGCMinHeap: by default a node with a small heap turns GOGC off under
// a 64 MB memory limit (INFO server's gc_percent, gc_memory_limit);
// --gc-min-heap 0, or a GOGC the user set, leaves the collector alone.
func TestGCMinHeap(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if val, set := os.LookupEnv(v); set {
			t.Skipf("%s=%s is set here: every node started would follow it", v, val)
		}
	}
	settings := func(p *proc) (string, string) {
		t.Helper()
		info := infoServer(t, p)
		return infoField(info, "gc_percent"), infoField(info, "gc_memory_limit")
	}
	if pct, limit := settings(startNode(t, t.TempDir())); pct != "off" || limit != "67108864" {
		t.Fatalf("default: gc_percent %s, gc_memory_limit %s; want off and 67108864", pct, limit)
	}
	if pct, limit := settings(startNode(t, t.TempDir(), "--gc-min-heap", "0")); pct != "100" || limit != "off" {
		t.Fatalf("--gc-min-heap 0: gc_percent %s, gc_memory_limit %s; want 100 and off", pct, limit)
	}
	if pct, limit := settings(startNodeEnv(t, []string{"GOGC=50"}, t.TempDir())); pct != "50" || limit != "off" {
		t.Fatalf("GOGC=50: gc_percent %s, gc_memory_limit %s; want 50 and off", pct, limit)
	}
}

// TestSysmonSetting: a node starts itself again, in place (same process
// ID), with GODEBUG=schedtrace=2147483647 added to what the user set (see
// package sysmon), and leaves a GODEBUG that sets schedtrace alone.
func TestSysmonSetting(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the restart is Linux-only")
	}
	if val, set := os.LookupEnv("GODEBUG"); set {
		t.Skipf("GODEBUG=%s is set here: every node started would follow it", val)
	}
	server := func(p *proc) (godebug, pid string) {
		t.Helper()
		info := infoServer(t, p)
		return infoField(info, "godebug"), infoField(info, "process_id")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, sysmon.Setting},
		{[]string{"GODEBUG=gctrace=0"}, "gctrace=0," + sysmon.Setting},
		{[]string{"GODEBUG=schedtrace=0"}, "schedtrace=0"},
	} {
		p := startNodeEnv(t, tc.env, t.TempDir())
		godebug, pid := server(p)
		if godebug != tc.want {
			t.Errorf("environment %q: the node runs with GODEBUG %q, want %q", tc.env, godebug, tc.want)
		}
		if want := strconv.Itoa(p.cmd.Process.Pid); pid != want {
			t.Errorf("environment %q: the node runs as process %s, want %s (the one started: a restart in place)", tc.env, pid, want)
		}
		// Named after its binary still, as ps, pgrep and pkill see it.
		if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err != nil || strings.TrimSpace(string(comm)) != filepath.Base(binary) {
			t.Errorf("environment %q: the node's process name is %q (%v), want %q", tc.env, comm, err, filepath.Base(binary))
		}
	}
}
