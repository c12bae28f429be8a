package control

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
)

// EdgeCertTTL is the lifetime of the edge certificates gateways get.
const EdgeCertTTL = 24 * time.Hour

// DefaultEdgeNames are the names gateways may get edge certificates for
// unless the server says otherwise (--edge-names): local ones only.
var DefaultEdgeNames = []string{"localhost", "127.0.0.1", "::1"}

// CheckEdgeNames validates the patterns of --edge-names: DNS names, a
// "*.domain" wildcard standing for exactly one label, or IP addresses.
func CheckEdgeNames(patterns []string) error {
	for _, p := range patterns {
		if net.ParseIP(p) == nil && !ca.IsDNSName(p) {
			return fmt.Errorf("--edge-names: %q is not a DNS name, *.domain or IP address", p)
		}
	}
	return nil
}

// edgeNameAllowed reports whether a gateway may hold name under patterns.
// A pattern "*.example.com" allows one label in place of the star
// ("api.example.com", not "a.b.example.com" nor "example.com") and the
// wildcard name "*.example.com" itself; any other pattern allows only
// itself. DNS names compare without case, IP addresses by value.
func edgeNameAllowed(patterns []string, name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		for _, p := range patterns {
			if pip := net.ParseIP(p); pip != nil && pip.Equal(ip) {
				return true
			}
		}
		return false
	}
	name = strings.ToLower(name)
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == name {
			return true
		}
		suffix, ok := strings.CutPrefix(p, "*")
		if !ok || strings.HasPrefix(name, "*") {
			continue
		}
		if label, ok := strings.CutSuffix(name, suffix); ok && label != "" && !strings.Contains(label, ".") {
			return true
		}
	}
	return false
}

func (h *Handler) edgeCert(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ev := audit.Event{Type: "ca.edge", Actor: caller.String(), Subject: caller.String(), Source: remote(r)}
	var req EdgeCertRequest
	err := decode(w, r, &req)
	var iss *ca.Issued
	if err == nil {
		ev.Fields = map[string]string{"names": strings.Join(req.Names, ",")}
		iss, err = h.issueEdge(r, caller, req)
	}
	if err != nil {
		h.denied(r.Context(), ev, err)
		h.fail(w, r, err)
		return
	}
	// IssueEdge has audited the issuance.
	writeJSON(w, http.StatusOK, EdgeCertResponse{Chain: string(iss.ChainPEM())})
}

func (h *Handler) issueEdge(r *http.Request, caller spiffeid.ID, req EdgeCertRequest) (*ca.Issued, error) {
	if _, _, err := ca.ParseEdgeNames(req.Names); err != nil {
		return nil, badRequest("bad_names", err.Error())
	}
	for _, n := range req.Names {
		if !edgeNameAllowed(h.EdgeNames, n) {
			return nil, &httpError{status: http.StatusForbidden, code: "name_not_allowed",
				msg: fmt.Sprintf("%s may not get a certificate for %q: the server allows only %s (--edge-names)", caller, n, strings.Join(h.EdgeNames, ", "))}
		}
	}
	csr, err := ca.ParseCSR(req.CSR, caller)
	if err != nil {
		return nil, err
	}
	return h.CA.IssueEdge(r.Context(), caller, csr.PublicKey, req.Names, EdgeCertTTL)
}
