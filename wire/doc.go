// Package wire is rumor's client protocols: a Redis-compatible RESP2 server
// with inline commands (so nc, redis-cli, redis-benchmark and Redis client
// libraries all work) and the HTTP API. Both drive a Backend, which the node
// implements; wire itself holds no data.
//
// # The RESP codec
//
// resp.go holds the codec as pure functions on bytes (ParseCommand, the
// Append* reply writers, ParseReply for clients and tests), in the style of
// tidwall/redcon's resp.go. It is written here rather than taken from redcon
// because rumor needs every limit (argument count, bulk length, inline line
// length, request size) to be configurable and to fail early with an error
// that names the limit, and needs a pure parser the fuzzer can drive; redcon
// fixes its limits and owns the connection loop.
//
// # Serving
//
// NewServer takes a ServerConfig (Backend, limits, idle timeout) and Serve
// runs one goroutine per connection: read a command, execute it, append the
// reply to the connection's output buffer, and write the buffer only when no
// further command is already buffered, so pipelined requests are answered
// with one write. A protocol error is answered with -ERR and closes that
// connection only. Close stops the listener and every connection and waits
// for their goroutines; it is safe to call twice.
//
// The commands and their replies are listed in commands.go and in the
// README. Values are opaque bytes. A key holds a register (SET, PUT, GET,
// VGET) or a counter (INCR and friends); the other family's writes on it are
// refused with -WRONGTYPE, while GET reads a counter's value, as in Redis.
//
// # HTTP
//
// NewHTTPHandler serves PUT/GET/DELETE /kv/{key} with JSON values, /health,
// and /metrics (Prometheus) over the same Backend, plus the node's /cluster
// view and its fault control (GET/PUT /faults) when the node provides them.
package wire
