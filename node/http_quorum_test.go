package node

import (
	"net/http"
	"testing"
)

// TestHTTPQuorumOverReplicasIs400: ?r= or ?w= above the key's replicas
// is the request's fault, 400 as the README says, not a 500 (which HTTP
// clients and proxies retry and monitoring counts as a server failure).
func TestHTTPQuorumOverReplicasIs400(t *testing.T) {
	nodes := startClusterNodes(t, 3, false)
	n1 := nodes[0]
	if st, body := httpDo(t, n1, "PUT", "/kv/k?w=9", `"v"`); st != http.StatusBadRequest {
		t.Errorf("PUT /kv/k?w=9: status %d %s, want 400", st, body)
	}
	if st, body := httpDo(t, n1, "GET", "/kv/k?r=9", ""); st != http.StatusBadRequest {
		t.Errorf("GET /kv/k?r=9: status %d %s, want 400", st, body)
	}
	if st, body := httpDo(t, n1, "DELETE", "/kv/k?w=9", ""); st != http.StatusBadRequest {
		t.Errorf("DELETE /kv/k?w=9: status %d %s, want 400", st, body)
	}
}
