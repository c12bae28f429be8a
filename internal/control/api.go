// Package control is the Ward server's HTTPS API and its client: enrollment
// and renewal of workload identities, the revocation feed proxies watch,
// and the operator endpoints behind `ward token|cert|ca`.
package control

import "time"

// API paths. Everything under /v1/ is served over TLS on the server's main
// listener; CRL, OCSP, CA certificates, the bundle and metrics are also on the public HTTP
// listener because relying parties fetch them without credentials.
const (
	PathEnroll       = "/v1/enroll"         // POST EnrollRequest, no client cert needed
	PathRenew        = "/v1/renew"          // POST RenewRequest, mTLS with the current SVID
	PathTrust        = "/v1/trust"          // GET ?after=N&wait=30s, mTLS with any SVID: the trust feed
	PathBundle       = "/v1/bundle"         // GET, PEM
	PathTokens       = "/v1/tokens"         // POST TokenRequest, operator
	PathCerts        = "/v1/certs"          // GET ?id=&all=1, operator
	PathRevoke       = "/v1/certs/revoke"   // POST RevokeRequest, operator
	PathAuthorities  = "/v1/ca"             // GET, operator
	PathRotate       = "/v1/ca/rotate"      // POST, operator
	PathRetire       = "/v1/ca/retire"      // POST RetireRequest, operator
	PathAPIKeys      = "/v1/apikeys"        // GET (list) and POST APIKeyRequest (create), operator
	PathAPIKeyRevoke = "/v1/apikeys/revoke" // POST APIKeyRevokeRequest, operator
	PathAPIKeyFeed   = "/v1/apikeys/feed"   // GET ?after=N&wait=30s, gateways only
	PathEdgeCert     = "/v1/edgecert"       // POST EdgeCertRequest, gateways only
	PathCRL          = "/crl/"              // GET /crl/<authority-id>.crl, DER
	PathCACert       = "/ca/"               // GET /ca/<authority-id>.crt, DER: the AIA caIssuers URL
	PathOCSP         = "/ocsp"              // RFC 6960, GET and POST
	PathStatus       = "/v1/status"         // GET ServerStatus, public listener only
)

// ServerStatus says whether the server is sealed: started with its
// key-encryption key to come on standard input, and not yet given it.
type ServerStatus struct {
	Sealed bool `json:"sealed"`
}

// EnrollRequest trades a join token and a CSR for an X.509-SVID.
type EnrollRequest struct {
	Token string `json:"token"`
	CSR   []byte `json:"csr"` // DER, base64 in JSON
}

// RenewRequest asks for a new SVID for the identity the client proves over mTLS.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// SVIDResponse carries an issued SVID (leaf first, then its intermediate)
// and the current trust bundle, both PEM.
type SVIDResponse struct {
	SVID   string `json:"svid"`
	Bundle string `json:"bundle"`
}

// TrustResponse is the trust feed proxies watch: every revoked, unexpired
// serial and the current bundle (PEM), under a version that grows with
// every revocation and every intermediate introduced or retired.
type TrustResponse struct {
	Version int64    `json:"version"`
	Serials []string `json:"serials"`
	Bundle  string   `json:"bundle"`
}

// TokenRequest creates a join token for one SPIFFE ID.
type TokenRequest struct {
	ID  string `json:"id"`
	TTL string `json:"ttl"` // Go duration, e.g. "10m"
}

// TokenResponse returns the token once; the server keeps only its hash.
type TokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CertInfo describes one issued certificate in the inventory.
type CertInfo struct {
	Serial    string    `json:"serial"`
	ID        string    `json:"id"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	Status    string    `json:"status"` // valid, expired, revoked
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// RevokeRequest revokes by serial or by SPIFFE ID (exactly one).
type RevokeRequest struct {
	Serial string `json:"serial,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"` // keyCompromise, superseded, cessationOfOperation, unspecified
}

// RevokeResponse lists what was revoked.
type RevokeResponse struct {
	Revoked []CertInfo `json:"revoked"`
}

// AuthorityInfo describes one CA certificate.
type AuthorityInfo struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
}

// RetireRequest retires an intermediate: it leaves the bundle.
type RetireRequest struct {
	ID string `json:"id"`
	// Force retires even while certificates it issued are still valid:
	// they stop validating at once.
	Force bool `json:"force,omitempty"`
}

// APIKeyRequest creates an API key for an application.
type APIKeyRequest struct {
	App    string   `json:"app"`           // DNS label, e.g. "billing"
	Routes []string `json:"routes"`        // route names the key is valid for, or ["*"]
	TTL    string   `json:"ttl,omitempty"` // Go duration up to 8760h; empty: no expiry
}

// APIKeyCreated returns a new key. Key is the only copy of the plaintext:
// the server keeps its SHA-256 hash.
type APIKeyCreated struct {
	Key     string    `json:"key"`
	Prefix  string    `json:"prefix"`
	App     string    `json:"app"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: never
}

// APIKeyInfo describes a stored key; it holds no secret material.
type APIKeyInfo struct {
	Prefix  string    `json:"prefix"`
	App     string    `json:"app"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Status  string    `json:"status"` // active, expired, revoked
}

// APIKeyRevokeRequest revokes the key with this prefix.
type APIKeyRevokeRequest struct {
	Prefix string `json:"prefix"`
}

// APIKeyFeed is what gateways watch: every key (revoked and expired ones
// included) under a version that grows with every create and revoke. A
// gateway replaces its whole table with Keys.
type APIKeyFeed struct {
	Version int64             `json:"version"`
	Keys    []APIKeyFeedEntry `json:"keys"`
}

// APIKeyFeedEntry is one key as a gateway needs it to authenticate: the
// SHA-256 of the key (hex), never the key.
type APIKeyFeedEntry struct {
	Prefix  string    `json:"prefix"`
	App     string    `json:"app"`
	Hash    string    `json:"hash"`
	Scopes  []string  `json:"scopes"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked bool      `json:"revoked"`
}

// EdgeCertRequest asks for a TLS server certificate for a gateway's public
// listeners. Names are DNS names ("*.example.com" allowed) or IP addresses,
// each allowed by the server's --edge-names.
type EdgeCertRequest struct {
	CSR   []byte   `json:"csr"` // DER; only its public key is used
	Names []string `json:"names"`
}

// EdgeCertResponse carries the certificate chain, leaf first, PEM.
type EdgeCertResponse struct {
	Chain string `json:"chain"`
}

// Error is the body of every non-2xx answer: a message meant for the
// caller and a stable machine-readable code. Causes stay in the server log.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Problems locate what is wrong in a refused resource change
	// (file, line, field).
	Problems []Problem `json:"problems,omitempty"`
}
