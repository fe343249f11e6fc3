package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Peer authentication. A server that holds the cluster key opens every
// connection with a challenge, and serves it only once the client has
// answered with the challenge's HMAC under the key:
//
//	server  +RUMOR-PEER <nonce, 32 hex digits>\r\n
//	client  *2  $4 AUTH  $64 <HMAC-SHA256(key, "rumor-peer-auth-v1 " nonce), hex>
//	server  +OK\r\n
//
// Only nodes holding the key can make calls (merge, hint, forwarded
// writes). The key never crosses the network, and a recorded answer is
// no good for another connection. The calls themselves are not
// encrypted: the peer port belongs on a private network, as Riak's and
// Cassandra's do.

// ClusterKey derives the key nodes authenticate with, and gossip (serf)
// encrypts with, from the secret an operator gives (--cluster-key).
func ClusterKey(secret string) []byte {
	sum := sha256.Sum256([]byte("rumor cluster key\x00" + secret))
	return sum[:]
}

const (
	peerChallengePrefix = "+RUMOR-PEER "
	peerAuthContext     = "rumor-peer-auth-v1 "
)

// ErrPeerAuth is wrapped by a client's error when the peer refused its
// key, or did not ask for one while this node has one.
var ErrPeerAuth = errors.New("peer authentication failed")

func peerProof(key []byte, nonce string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(peerAuthContext + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// authenticatePeer is the server's side: it sends the challenge and reads
// the answer, within deadline. The answer has one form and one length, so
// it is read as exactly that many bytes: nothing a client without the key
// sends makes the server allocate more (a declared bulk length read with
// the peer's limits, which may be huge, crashed it), and nothing past the
// answer is taken from the connection.
func authenticatePeer(c net.Conn, key []byte, deadline time.Duration) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	n := hex.EncodeToString(nonce[:])
	c.SetDeadline(time.Now().Add(deadline))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(peerChallengePrefix + n + "\r\n")); err != nil {
		return err
	}
	want := peerAnswer(peerProof(key, n))
	got := make([]byte, len(want))
	// The prefix first: a client sending something else is told at once.
	if _, err := io.ReadFull(c, got[:len(peerAnswerPrefix)]); err != nil {
		return fmt.Errorf("reading its answer (does it have --cluster-key?): %w", err)
	}
	if string(got[:len(peerAnswerPrefix)]) != peerAnswerPrefix {
		return errors.New("it did not answer the challenge (does it have --cluster-key?)")
	}
	if _, err := io.ReadFull(c, got[len(peerAnswerPrefix):]); err != nil {
		return fmt.Errorf("reading its answer: %w", err)
	}
	if !hmac.Equal(got, want) {
		return errors.New("wrong cluster key")
	}
	_, err := c.Write([]byte("+OK\r\n"))
	return err
}

// peerAnswerPrefix starts the client's answer; the proof is 64 hex digits.
const peerAnswerPrefix = "*2\r\n$4\r\nAUTH\r\n$64\r\n"

func peerAnswer(proof string) []byte { return []byte(peerAnswerPrefix + proof + "\r\n") }

// authenticateToPeer is the client's side, within deadline.
func authenticateToPeer(c net.Conn, key []byte, deadline time.Time) error {
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	line, err := readPeerLine(c)
	if err != nil {
		return fmt.Errorf("%w: reading its challenge (does it have --cluster-key?): %v", ErrPeerAuth, err)
	}
	nonce, ok := bytes.CutPrefix(line, []byte(peerChallengePrefix))
	if !ok || len(nonce) != 32 {
		return fmt.Errorf("%w: it sent no challenge but %q", ErrPeerAuth, printable(line, 64))
	}
	if _, err := c.Write(peerAnswer(peerProof(key, string(nonce)))); err != nil {
		return fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	line, err = readPeerLine(c)
	if err != nil {
		return fmt.Errorf("%w: it closed the connection after our answer (a different --cluster-key?): %v", ErrPeerAuth, err)
	}
	if string(line) != "+OK" {
		return fmt.Errorf("%w: %q", ErrPeerAuth, printable(line, 64))
	}
	return nil
}

// readPeerLine reads one short line, without its CRLF, byte by byte:
// nothing after it may be taken from the connection before the reply
// reader starts (the server sends nothing more until the first call).
func readPeerLine(c net.Conn) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) < 128 {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		line = append(line, b[0])
	}
	return nil, errors.New("line too long")
}
