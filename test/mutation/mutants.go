package main

// mutants is the table: per package, the realistic ways each security
// decision could break. A new decision in these packages gets its mutants
// here; a mutant that survives gets a test, or a Harmless reason that
// docs/testing.md repeats.
var mutants = []Mutant{
	// internal/policy: who may call whom.
	{
		ID: "policy/from-prefix", Pkg: "internal/policy", File: "engine.go",
		From: `		if seg != "*" && seg != path[:n] {`,
		To:   `		if seg != "*" && !strings.HasPrefix(path[:n], seg) {`,
		Why:  "a from segment matched by prefix admits svc/catalog-evil (issue 19 item 1)",
	},
	{
		ID: "policy/from-longer-id", Pkg: "internal/policy", File: "engine.go",
		From: "\t\tpath = path[n:]\n\t}\n\treturn path == \"\"",
		To:   "\t\tpath = path[n:]\n\t}\n\treturn true",
		Why:  "from: [svc/catalog] admits svc/catalog/admin",
	},
	{
		ID: "policy/no-peer-allowed", Pkg: "internal/policy", File: "engine.go",
		From: "\tif peerPath == \"\" {\n\t\treturn false\n\t}",
		To:   "\tif peerPath == \"\" {\n\t\treturn true\n\t}",
		Why:  "a caller outside the trust domain (or without identity) matches every rule",
	},
	{
		ID: "policy/path-prefix-any", Pkg: "internal/policy", File: "engine.go",
		From: `if p.prefix && strings.HasPrefix(path, p.s) || path == p.s {`,
		To:   `if strings.HasPrefix(path, p.s) || path == p.s {`,
		Why:  "an exact path rule /orders admits /orders-admin",
	},
	{
		ID: "policy/method-ignored", Pkg: "internal/policy", File: "engine.go",
		From: `if r.methods&c.methodBit == 0 || !r.matchPeer(c.peerPath) || !r.matchPath(c.path) {`,
		To:   `if !r.matchPeer(c.peerPath) || !r.matchPath(c.path) {`,
		Why:  "a GET-only rule admits DELETE",
	},
	{
		ID: "policy/condition-error-allows", Pkg: "internal/policy", File: "engine.go",
		From: "\t\t\tif !ok {\n\t\t\t\tcontinue\n\t\t\t}",
		To:   "\t\t\tif !ok && err == nil {\n\t\t\t\tcontinue\n\t\t\t}",
		Why:  "a CEL condition that fails to evaluate allows instead of denying",
	},
	{
		ID: "policy/no-policy-allows", Pkg: "internal/policy", File: "engine.go",
		From: `return Decision{Rule: -1, Reason: ReasonNoPolicy,`,
		To:   `return Decision{Allow: true, Rule: -1, Reason: ReasonNoPolicy,`,
		Why:  "default deny: a service without policy is open",
	},
	{
		ID: "policy/dry-run-enforced-open", Pkg: "internal/policy", File: "engine.go",
		From: "\tif t.enforce != nil {\n\t\treturn t.enforce.decide(&c)\n\t}",
		To:   "\tif t.enforce != nil && t.dryRun == nil {\n\t\treturn t.enforce.decide(&c)\n\t}",
		Why:  "a dry-run policy beside an enforced one turns enforcement off",
	},
	{
		ID: "policy/dot-dot-kept", Pkg: "internal/policy", File: "path.go",
		From: "\t\t\tcase j < 0:\n\t\t\t\treturn \"\", errAboveRoot",
		To:   "\t\t\tcase j < -1:\n\t\t\t\treturn \"\", errAboveRoot",
		Why:  "a path climbing above the root is accepted",
	},
	{
		ID: "policy/encoded-slash", Pkg: "internal/policy", File: "path.go",
		From: "\t\t\tif c == '/' || c == '\\\\' {\n\t\t\t\treturn \"\", errEncodedSlash",
		To:   "\t\t\tif c == '\\\\' {\n\t\t\t\treturn \"\", errEncodedSlash",
		Why:  "%2F is decoded into a path separator instead of refused",
	},
	{
		ID: "policy/double-encoding", Pkg: "internal/policy", File: "path.go",
		From: `if c == '%' && i+2 < len(dec) && isHex(dec[i+1]) && isHex(dec[i+2]) {`,
		To:   `if c == '%' && i+3 < len(dec) && isHex(dec[i+1]) && isHex(dec[i+2]) {`,
		Why:  "a double-encoded escape at the end of a path is accepted",
	},
	{
		ID: "policy/semicolon", Pkg: "internal/policy", File: "path.go",
		From: "\t\tcase c == ';':\n\t\t\treturn \"\", errSemicolon",
		To:   "\t\tcase c == ';' && false:\n\t\t\treturn \"\", errSemicolon",
		Why:  "matrix parameters (;) pass, so /orders;x=/../admin reads differently to the app",
	},
	{
		ID: "policy/confusable-slash", Pkg: "internal/policy", File: "path.go",
		From: "bytes.ContainsAny(p.Decomposition(), `./\\%;`) || isSlashLike(dec[i:])",
		To:   "bytes.ContainsAny(p.Decomposition(), `./\\%;`)",
		Why:  "a Unicode slash look-alike (U+2215) passes as an ordinary character",
	},

	// internal/proxy: the HTTP/1.x framing guard, before any policy runs.
	{
		ID: "proxy/underscore-names", Pkg: "internal/proxy", File: "syntax.go",
		From: "return isTchar(c) && c != '_' })",
		To:   "return isTchar(c) })",
		Why:  "header names with '_' pass, and CGI-style apps read x_ward_user as X-Ward-User",
	},
	{
		ID: "proxy/cl-and-te", Pkg: "internal/proxy", File: "head.go",
		From: "\tif h.hasTE {\n\t\treturn vCLTE\n\t}",
		To:   "\tif h.hasTE && false {\n\t\treturn vCLTE\n\t}",
		Why:  "Transfer-Encoding then Content-Length (request smuggling) passes",
	},
	{
		ID: "proxy/te-and-cl", Pkg: "internal/proxy", File: "head.go",
		From: "\tif h.hasCL {\n\t\treturn vCLTE\n\t}",
		To:   "\tif h.hasCL && false {\n\t\treturn vCLTE\n\t}",
		Why:  "Content-Length then Transfer-Encoding (request smuggling) passes",
	},
	{
		ID: "proxy/duplicate-cl", Pkg: "internal/proxy", File: "head.go",
		From: "\tif h.hasCL {\n\t\treturn vMultiCL\n\t}",
		To:   "\tif h.hasCL && false {\n\t\treturn vMultiCL\n\t}",
		Why:  "two Content-Length fields pass, the last one winning",
	},
	{
		ID: "proxy/cl-list", Pkg: "internal/proxy", File: "head.go",
		From: "\tif bytes.IndexByte(v, ',') >= 0 {\n\t\treturn vMultiCL",
		To:   "\tif bytes.IndexByte(v, ',') > 0 && false {\n\t\treturn vMultiCL",
		Why:  "Content-Length: 5, 50 passes",
	},
	{
		ID: "proxy/te-not-chunked", Pkg: "internal/proxy", File: "head.go",
		From: "if v, _ := trimOWS(value); !equalFold(v, \"chunked\") {",
		To:   "if v, _ := trimOWS(value); len(v) == 0 {",
		Why:  "Transfer-Encoding: gzip, chunked (or xchunked) passes",
	},
	{
		ID: "proxy/te-http10", Pkg: "internal/proxy", File: "head.go",
		From: "\tif h.http10 {\n\t\treturn vTE10",
		To:   "\tif h.http10 && false {\n\t\treturn vTE10",
		Why:  "an HTTP/1.0 request with Transfer-Encoding passes",
	},
	{
		ID: "proxy/two-hosts", Pkg: "internal/proxy", File: "head.go",
		From: "\tif h.hasHost {\n\t\treturn vMultiHost",
		To:   "\tif h.hasHost && false {\n\t\treturn vMultiHost",
		Why:  "two Host fields pass, so routing and the app may see different hosts",
	},
	{
		ID: "proxy/obs-fold", Pkg: "internal/proxy", File: "head.go",
		From: "\tif isOWS(line[0]) {\n\t\treturn vObsFold",
		To:   "\tif isOWS(line[0]) && false {\n\t\treturn vObsFold",
		Why:  "obsolete line folding passes",
	},
	{
		ID: "proxy/host-mismatch", Pkg: "internal/proxy", File: "head.go",
		From: "if h.absForm && h.hasHost && !equalFoldBytes(b[h.hostOff:h.hostEnd], b[h.authOff:h.authEnd]) {",
		To:   "if h.absForm && h.hasHost && false {",
		Why:  "an absolute-form target naming another host than Host passes",
	},
	{
		ID: "proxy/body-limit", Pkg: "internal/proxy", File: "head.go",
		From: "if h.hasCL && lim.MaxBodyBytes >= 0 && h.cl > lim.MaxBodyBytes {",
		To:   "if h.hasCL && lim.MaxBodyBytes >= 0 && h.cl > 2*lim.MaxBodyBytes {",
		Why:  "a body twice the limit is announced and accepted",
	},
	{
		ID: "proxy/cl-overflow", Pkg: "internal/proxy", File: "syntax.go",
		From: "\t\tif n > (math.MaxInt64-d)/10 {\n\t\t\treturn 0, false",
		To:   "\t\tif n > (math.MaxInt64-d)/10 && false {\n\t\t\treturn 0, false",
		Why:  "a Content-Length past 2^63 wraps around",
	},
	{
		ID: "proxy/chunk-size-digits", Pkg: "internal/proxy", File: "chunked.go",
		From: "\t\t\t\tif p.digits == 16 {",
		To:   "\t\t\t\tif p.digits == 17 {",
		Why:  "a chunk size of 17 hex digits overflows",
	},
	{
		ID: "proxy/chunk-trailer-framing", Pkg: "internal/proxy", File: "chunked.go",
		From: "if p.nameLen <= len(p.name) && isFramingField(p.name[:p.nameLen]) {",
		To:   "if p.nameLen <= len(p.name) && false {",
		Why:  "a trailer carrying Content-Length or Host passes",
	},

	{
		ID: "proxy/body-declared-over-limit", Pkg: "internal/proxy", File: "body.go",
		From: "\tif limit > 0 && r.ContentLength > limit {",
		To:   "\tif limit > 0 && r.ContentLength > 2*limit {",
		Why:  "a declared body up to twice the Route's or Service's limit is received (issue 12 finding 9)",
	},
	{
		ID: "proxy/body-chunked-over-limit", Pkg: "internal/proxy", File: "body.go",
		From: "\tif limit > 0 {\n\t\tbody = http.MaxBytesReader(w, body, limit)",
		To:   "\tif limit < 0 {\n\t\tbody = http.MaxBytesReader(w, body, limit)",
		Why:  "a chunked body (no Content-Length) has no size limit (issue 12 finding 9)",
	},
	{
		ID: "proxy/body-budget-overdrawn", Pkg: "internal/proxy", File: "body.go",
		From: "\t\tif u+n > b.max {",
		To:   "\t\tif u > b.max {",
		Why:  "the process-wide body budget is overdrawn by the request that crosses it (issue 12 finding 9)",
	},
	{
		ID: "proxy/body-streamed-unbuffered", Pkg: "internal/proxy", File: "body.go",
		From: "\tif r.ContentLength > b.cfg.Buffer {",
		To:   "\tif r.ContentLength >= 0 {",
		Why:  "bodies go to the app as they trickle in instead of being received first (issue 12 finding 8)",
	},
	{
		ID: "proxy/source-cap", Pkg: "internal/proxy", File: "sources.go",
		From: "\tif c.inflight[key] >= c.max {",
		To:   "\tif c.inflight[key] > 2*c.max {",
		Why:  "one source holds twice its share of concurrent requests (issue 12 finding 8)",
	},
	{
		ID: "proxy/ipv6-per-address", Pkg: "internal/proxy", File: "sources.go",
		From: "\treturn netip.PrefixFrom(a, 64).Masked().String()",
		To:   "\treturn a.String()",
		Why:  "an IPv6 client escapes per-source limits by rotating addresses inside its /64",
	},

	{
		ID: "proxy/ward-owned-case", Pkg: "internal/proxy", File: "hygiene.go",
		From: "\t\tcase 'A' <= c && c <= 'Z':\n",
		To:   "\t\tcase false:\n",
		Why:  "x-ward-user in lower case is not recognised as Ward's, so it is not stripped (issue 12 finding 3)",
	},
	{
		ID: "proxy/ward-owned-underscore", Pkg: "internal/proxy", File: "hygiene.go",
		From: "\t\tcase c == '_':\n\t\t\tc = '-'",
		To:   "\t\tcase false:\n\t\t\tc = '-'",
		Why:  "x_ward_user is not recognised as Ward's, and CGI stacks read it as X-Ward-User (issue 12 finding 3)",
	},
	{
		ID: "proxy/restore-ward", Pkg: "internal/proxy", File: "hygiene.go",
		From: "\t\tif WardOwned(k) {\n\t\t\tout[k] = slices.Clone(vs)",
		To:   "\t\tif false && WardOwned(k) {\n\t\t\tout[k] = slices.Clone(vs)",
		Why:  "Ward's headers removed by a client's Connection header are not put back (issue 12 finding 7)",
	},
	{
		ID: "proxy/set-path-encoded-twice", Pkg: "internal/proxy", File: "path.go",
		From: "\tu.Path, u.RawPath = dec, \"\"",
		To:   "\tu.Path, u.RawPath = canonical+dec[:0], \"\"",
		Why:  "the next hop receives /a%2520b where policy decided on /a%20b (issue 12 finding 10)",
	},
	{
		ID: "proxy/http2-name-rule", Pkg: "internal/proxy", File: "hygiene.go",
		From: "\t\tif v := fieldNameViolation(k); v != nil {\n\t\t\treturn requestError(v)",
		To:   "\t\tif v := fieldNameViolation(k); v != nil && false {\n\t\t\treturn requestError(v)",
		Why:  "an HTTP/2 header name with '_' passes where HTTP/1 refuses it (issue 12 finding 3)",
	},
	{
		ID: "proxy/http2-header-count", Pkg: "internal/proxy", File: "hygiene.go",
		From: "\tif fields > lim.MaxHeaders {",
		To:   "\tif fields > 2*lim.MaxHeaders {",
		Why:  "an HTTP/2 request carries twice the header fields HTTP/1 may (issue 12 finding 3)",
	},

	// internal/idtoken: the identity token a gateway signs for services.
	{
		ID: "idtoken/any-signer", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tif !isGateway(id) {\n\t\treturn nil, \"\", fmt.Errorf(\"%w: %s is not a gateway\", ErrSigner, id)",
		To:   "\tif false && !isGateway(id) {\n\t\treturn nil, \"\", fmt.Errorf(\"%w: %s is not a gateway\", ErrSigner, id)",
		Why:  "a token signed by a service's SVID (not a gateway) is believed",
	},
	{
		ID: "idtoken/signer-not-sender", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tcase c.Signer != peer.String():",
		To:   "\tcase c.Signer == \"\":",
		Why:  "a token replayed by another peer than its signer is accepted",
	},
	{
		ID: "idtoken/audience", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tcase c.Audience != v.Audience.String():",
		To:   "\tcase c.Audience == \"\":",
		Why:  "a token for orders is accepted by payments",
	},
	{
		ID: "idtoken/expired", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tcase now.Add(-leeway).Unix() > c.Expiry:",
		To:   "\tcase now.Add(-leeway).Unix() > c.Expiry+3600:",
		Why:  "an expired token is accepted for another hour",
	},
	{
		ID: "idtoken/revoked-signer", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tserial := leaf.SerialNumber.Text(16)\n\tif v.Revoked != nil && v.Revoked(serial) {",
		To:   "\tserial := leaf.SerialNumber.Text(16)\n\tif v.Revoked != nil && v.Revoked(serial) && false {",
		Why:  "a token signed by a revoked gateway certificate is believed",
	},
	{
		ID: "idtoken/revoked-cached", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\t\tif v.Revoked != nil && v.Revoked(hit.serial) {",
		To:   "\t\tif false {",
		Why:  "a cached token outlives its signer's revocation",
	},
	{
		ID: "idtoken/iss-mismatch", Pkg: "internal/idtoken", File: "idtoken.go",
		From: "\tif c.Signer != id.String() {",
		To:   "\tif c.Signer == \"\" {",
		Why:  "the iss claim may name another gateway than the certificate that signed",
	},

	// internal/authn: credentials to a Principal.
	{
		ID: "authn/apikey-hash", Pkg: "internal/authn", File: "apikey.go",
		From: "if subtle.ConstantTimeCompare(sum[:], rec.Hash[:]) != 1 || rec.Prefix != prefix {",
		To:   "if subtle.ConstantTimeCompare(sum[:], sum[:]) != 1 || rec.Prefix != prefix {",
		Why:  "an API key is accepted on its public prefix alone",
	},
	{
		ID: "authn/apikey-revoked", Pkg: "internal/authn", File: "apikey.go",
		From: "\tif rec.Revoked {",
		To:   "\tif rec.Revoked && false {",
		Why:  "a revoked API key still works",
	},
	{
		ID: "authn/apikey-expired", Pkg: "internal/authn", File: "apikey.go",
		From: "\tif !rec.Expires.IsZero() && !now.Before(rec.Expires) {",
		To:   "\tif !rec.Expires.IsZero() && now.After(rec.Expires.Add(time.Hour)) {",
		Why:  "an expired API key works for another hour",
	},
	{
		ID: "authn/apikey-route-scope", Pkg: "internal/authn", File: "apikey.go",
		From: "\tif route == \"\" || !(slices.Contains(rec.Scopes, route) || slices.Contains(rec.Scopes, APIKeyScopeAll)) {",
		To:   "\tif route == \"\" {",
		Why:  "an API key for one route opens every route",
	},
	{
		ID: "authn/jwt-alg-allowlist", Pkg: "internal/authn", File: "verifier.go",
		From: "\tif !slices.Contains(st.cfg.Algorithms, alg) {",
		To:   "\tif !slices.Contains(supportedAlgorithms, alg) {",
		Why:  "a token signed with an algorithm the issuer does not use is accepted",
	},
	{
		ID: "authn/jwt-no-exp", Pkg: "internal/authn", File: "verifier.go",
		From: "\tif std.Expiry == nil {",
		To:   "\tif std.Expiry == nil && false {",
		Why:  "a JWT without exp is accepted forever",
	},
	{
		ID: "authn/jwt-issuer-allowed", Pkg: "internal/authn", File: "verifier.go",
		From: "if st.cfg.IssuerURL == iss && (len(allowed) == 0 || slices.Contains(allowed, st.cfg.Name)) {",
		To:   "if st.cfg.IssuerURL == iss {",
		Why:  "a route trusting issuer corp accepts a token from issuer partner",
	},

	{
		ID: "authn/anonymous-limit-by-user-agent", Pkg: "internal/authn", File: "principal.go",
		From: "\tif strings.HasPrefix(k, \"anonymous:\") && p.Source != \"\" {",
		To:   "\tif strings.HasPrefix(k, \"anonymous:\") && p.Source == \"\" {",
		Why:  "an anonymous caller escapes its rate limit by changing its User-Agent (issue 12 finding 6)",
	},

	// internal/ca: CSR and join-token checks.
	{
		ID: "ca/csr-signature", Pkg: "internal/ca", File: "csr.go",
		From: "\tif err := csr.CheckSignature(); err != nil {",
		To:   "\tif err := csr.CheckSignature(); err != nil && false {",
		Why:  "a CSR whose self-signature does not verify (proof of key possession) is signed",
	},
	{
		ID: "ca/csr-is-ca", Pkg: "internal/ca", File: "csr.go",
		From: "\t\t\tif bc.IsCA {",
		To:   "\t\t\tif bc.IsCA && bc.MaxPathLen > 0 {",
		Why:  "a CSR asking for a CA certificate is accepted",
	},
	{
		ID: "ca/csr-dns-san", Pkg: "internal/ca", File: "csr.go",
		From: "\tif len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {",
		To:   "\tif len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {",
		Why:  "a CSR may ask for a DNS name it does not own",
		Harmless: "defence in depth: checkSANs has already refused every subject alternative " +
			"name but a URI while reading the extension, so this check never sees a DNS name",
	},
	{
		ID: "ca/csr-other-id", Pkg: "internal/ca", File: "csr.go",
		From: "\t\tif !want.IsZero() && got != want {",
		To:   "\t\tif !want.IsZero() && got.TrustDomain() != want.TrustDomain() {",
		Why:  "a token for svc/orders enrolls svc/payments",
	},
	{
		ID: "ca/csr-weak-rsa", Pkg: "internal/ca", File: "csr.go",
		From: "if n := k.N.BitLen(); n < 2048 || n > 8192 {",
		To:   "if n := k.N.BitLen(); n < 1024 || n > 8192 {",
		Why:  "a 1024-bit RSA key is certified",
	},
	{
		ID: "ca/token-shape", Pkg: "internal/ca", File: "token.go",
		From: "\tif err != nil || len(secret) != tokenSecretLen {",
		To:   "\tif err != nil || len(secret) == 0 {",
		Why:  "a join token of the wrong length is looked up",
		Harmless: "unreachable: the encoded length is checked just before, and a strict " +
			"base64 decoding of that length always yields tokenSecretLen bytes",
	},
	{
		ID: "ca/workload-namespace", Pkg: "internal/ca", File: "issue.go",
		From: `if name, ok := strings.CutPrefix(id.Path(), ns); ok && name != "" && !strings.Contains(name, "/") {`,
		To:   `if name, ok := strings.CutPrefix(id.Path(), ns); ok && name != "" {`,
		Why:  "a join token for spiffe://TD/svc/orders/admin (a nested workload id) is created",
	},
	{
		ID: "ca/workload-trust-domain", Pkg: "internal/ca", File: "issue.go",
		From: "\tif !id.MemberOf(c.cfg.TrustDomain) {",
		To:   "\tif id.IsZero() {",
		Why:  "a join token for another trust domain is created",
	},

	// internal/control: who may change what.
	{
		ID: "control/developer-is-admin", Pkg: "internal/control", File: "roles.go",
		From: "\tcase RoleAdmin:\n\t\treturn nil\n\tcase RoleDeveloper:\n",
		To:   "\tcase RoleAdmin, RoleDeveloper:\n\t\treturn nil\n\tcase \"\":\n",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer may change every team's resources (issue 19 item 4)",
	},
	{
		ID: "control/owner-new-version-only", Pkg: "internal/control", File: "roles.go",
		From: "before, after := byKey(old), byKey(next)",
		To:   "before, after := byKey(next), byKey(next)",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer retargets or deletes another team's objects, ownership being checked on the new version only (issue 19 item 3)",
	},
	{
		ID: "control/developer-admin-endpoints", Pkg: "internal/control", File: "roles.go",
		From: "\t\treturn need <= accessResources\n",
		To:   "\t\treturn need <= accessAdmin\n",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer reaches admin-only endpoints: join tokens, CA rotation, API keys, operators",
	},
	{
		ID: "control/auditor-writes", Pkg: "internal/control", File: "roles.go",
		From: "\t\treturn need == accessRead\n",
		To:   "\t\treturn need <= accessResources\n",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "an auditor may apply, delete and roll back resources",
	},
	{
		ID: "control/issuer-by-developer", Pkg: "internal/control", File: "roles.go",
		From: "\t\t\tif len(services) == 0 {",
		To:   "\t\t\tif len(services) == 0 && false {",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer changes an Issuer (what every route trusts), which concerns no single service",
	},
	{
		ID: "control/role-not-checked", Pkg: "internal/control", File: "roles.go",
		From: "err == nil && !allows(op.Role, need) {",
		To:   "err == nil && false {",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "any operator reaches every endpoint whatever their role",
	},

	{
		ID: "control/reroutes-ignored", Pkg: "internal/control", File: "roles.go",
		From: "for _, rr := range resource.Reroutes(old, next) {",
		To:   "for _, rr := range resource.Reroutes(old, old) {",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer's Route shadows another team's and takes its traffic (issue 12 finding 1)",
	},
	{
		ID: "control/reroutes-new-owner-only", Pkg: "internal/control", File: "roles.go",
		From: "for _, o := range []*resource.Object{rr.Before, rr.After} {",
		To:   "for _, o := range []*resource.Object{rr.After} {",
		Run:  "Developer|Owner|Operator|Role|Admin|Auditor",
		Why:  "a developer moves requests away from another team's Route to their own",
	},
	{
		ID: "resource/prefix-covers-by-string", Pkg: "internal/resource", File: "routes.go",
		From: "strings.HasPrefix(inner, outer) && inner[len(outer)] == '/'",
		To:   "strings.HasPrefix(inner, outer)",
		Why:  "a prefix /orders is taken to cover /orders-admin, so the ownership check misjudges whose requests move",
	},
	{
		ID: "resource/host-routes-first", Pkg: "internal/resource", File: "routes.go",
		From: "\tif m := t.byHost[host]; m != nil {\n\t\tif it, ok := longestPrefix(m, path); ok {",
		To:   "\tif m := t.byHost[host]; m != nil && false {\n\t\tif it, ok := longestPrefix(m, path); ok {",
		Why:  "a Route for one host is ignored for the any-host Route, so requests reach the wrong service",
	},

	// internal/gateway: the edge's fail-closed points and its own checks.
	{
		ID: "gateway/limiter-down-serves", Pkg: "internal/gateway", File: "handler.go",
		From: "return pipeline.Refuse(pipeline.LimiterDown, err.Error())",
		To:   "return pipeline.Refusal{}",
		Run:  "TestRateLimiterDownFailsClosed",
		Why:  "a rate limiter that cannot count (Redis down) lets every request through (issue 19 item 6)",
	},
	{
		ID: "gateway/rate-limit-ignored", Pkg: "internal/gateway", File: "handler.go",
		From: "\tif !res.Allowed {",
		To:   "\tif false {",
		Run:  "TestRateLimit$|TestAnonymousLimit",
		Why:  "a caller over its rate limit is served",
	},
	{
		ID: "gateway/audit-not-ready", Pkg: "internal/gateway", File: "handler.go",
		From: "\tif err := audit.Ready(g.cfg.Events); err != nil {",
		To:   "\tif err := audit.Ready(g.cfg.Events); err != nil && false {",
		Run:  "TestFailClosedWithoutAudit|TestStalledLogRefusesAtOnce",
		Why:  "a request is forwarded though its record cannot be written",
	},
	{
		ID: "gateway/edge-policy-skipped", Pkg: "internal/gateway", File: "handler.go",
		From: "\tdec := snap.engine.Decide(req)\n\tif !dec.Allow {",
		To:   "\tdec := snap.engine.Decide(req)\n\tif !dec.Allow && dec.Reason != policy.ReasonNoRuleMatches {",
		Run:  "TestDefaultDenyAtTheEdge|TestPolicyAtTheEdge",
		Why:  "default deny at the edge: a route to a service whose policy admits no gateway call is open",
	},
	{
		ID: "gateway/route-condition-ignored", Pkg: "internal/gateway", File: "handler.go",
		From: "\tif !ok {\n\t\treturn pipeline.Refuse(pipeline.ConditionFailed, \"route condition does not hold\")",
		To:   "\tif !ok && false {\n\t\treturn pipeline.Refuse(pipeline.ConditionFailed, \"route condition does not hold\")",
		Run:  "TestRouteConditionAtTheEdge|TestGatewayStrips",
		Why:  "a Route's condition that does not hold lets the request through",
	},
	{
		ID: "gateway/forwards-unrecorded", Pkg: "internal/gateway", File: "handler.go",
		From: "\tif err := g.cfg.Events.Emit(r.Context(), x.State.rec); err != nil {",
		To:   "\tif err := g.cfg.Events.Emit(r.Context(), x.State.rec); err != nil && false {",
		Run:  "TestDecisionRecordedBeforeForwarding",
		Why:  "a request reaches the service though its decision could not be recorded (issue 13)",
	},
	{
		ID: "gateway/source-cap-ignored", Pkg: "internal/gateway", File: "body.go",
		From: "\trelease, ok := g.sources.Acquire(x.Source)\n\tif !ok {",
		To:   "\trelease, ok := g.sources.Acquire(x.Source)\n\tif !ok && false {",
		Run:  "TestSlowBodiesCannotStarveAnotherSource",
		Why:  "one source holds every concurrent-request slot (issue 12 finding 8)",
	},

	{
		ID: "control/ingest-from-anyone", Pkg: "internal/control", File: "auditlog.go",
		From: "\tkind, _, ok := proxyKind(caller)\n\tif !ok {",
		To:   "\tkind, _, ok := proxyKind(caller)\n\tif !ok && false {",
		Run:  "Audit|Ingest",
		Why:  "an operator's or auditor's certificate writes audit records (issue 12 finding 4)",
	},
	{
		ID: "control/ingest-dedupe-per-identity", Pkg: "internal/control", File: "auditlog.go",
		From: "key := \"audit.shipped.\" + caller.String() + \"#\" + batch.LogID",
		To:   "key := \"audit.shipped.\" + caller.String()",
		Run:  "Audit|Ingest",
		Why:  "a second replica's or a restarted proxy's records are acknowledged and dropped (issue 12 finding 2)",
	},
	{
		ID: "control/ingest-huge-seq", Pkg: "internal/control", File: "auditlog.go",
		From: "\t\tcase rec.Seq == 0 || rec.Seq > MaxShippedSeq:",
		To:   "\t\tcase rec.Seq == 0:",
		Run:  "Audit|Ingest",
		Why:  "a sender posting seq 2^64-1 silences its log (issue 12 finding 2)",
	},
	{
		ID: "control/ingest-gap", Pkg: "internal/control", File: "auditlog.go",
		From: "\tif len(recs) > 0 && recs[0].Seq != next {",
		To:   "\tif len(recs) > 0 && recs[0].Seq < next {",
		Run:  "Audit|Ingest",
		Why:  "a batch that skips records is taken, and the skipped ones can never be shipped (issue 12 finding 2)",
	},
	{
		ID: "control/ingest-any-type", Pkg: "internal/control", File: "auditlog.go",
		From: "\t\tself, ok := types[rec.Event.Type]\n\t\tif !ok {",
		To:   "\t\tself, ok := types[rec.Event.Type]\n\t\tif !ok && false {",
		Run:  "Audit|Ingest",
		Why:  "a proxy writes control-plane events (ca.issue, resource changes) into the trail (issue 12 finding 4)",
	},
	{
		ID: "control/ingest-other-subject", Pkg: "internal/control", File: "auditlog.go",
		From: "\t\tif self && rec.Event.Subject != caller.String() {",
		To:   "\t\tif false && self && rec.Event.Subject != caller.String() {",
		Run:  "Audit|Ingest",
		Why:  "a sidecar writes request records in another service's name (issue 12 finding 4)",
	},
	{
		ID: "control/ingest-future-time", Pkg: "internal/control", File: "auditlog.go",
		From: "e.Time.After(now.Add(maxClockSkew))",
		To:   "e.Time.After(now.Add(1000 * maxClockSkew))",
		Run:  "Audit|Ingest",
		Why:  "a proxy dates its records days ahead, out of reach of queries by time (issue 12 finding 4)",
	},

	{
		ID: "gateway/strip-ward", Pkg: "internal/gateway", File: "hygiene.go",
		From: "\tproxy.StripWard(r.Header)\n",
		To:   "\t_ = proxy.StripWard\n",
		Run:  "TestGatewayStripsWardHeadersBeforeConditions|TestInjectedIdentity|TestHTTP2MeetsTheSameHygiene",
		Why:  "the gateway lets forged X-Ward-* headers reach its route conditions (issue 19 item 2)",
	},
	{
		ID: "gateway/http2-unchecked", Pkg: "internal/gateway", File: "hygiene.go",
		From: "\tif err := g.guard.Check(r); err != nil {",
		To:   "\tif err := g.guard.Check(r); err != nil && false {",
		Run:  "TestHTTP2MeetsTheSameHygiene",
		Why:  "HTTP/2 requests skip the header rules HTTP/1 meets: x_ward_user reaches the app (issue 12 finding 3)",
	},
	{
		ID: "gateway/path-encoded-twice", Pkg: "internal/gateway", File: "handler.go",
		From: "\tproxy.SetPath(r.URL, x.Path)",
		To:   "\t_ = proxy.SetPath\n\tr.URL.Path, r.URL.RawPath = x.Path, \"\"",
		Run:  "TestAppReceivesTheAuthorizedPath|TestDenyPathEncodings",
		Why:  "the service receives /a%2520b where policy decided on /a%20b (issue 12 finding 10)",
	},

	// internal/identity: the one peer check of both sides of mesh TLS.
	{
		ID: "identity/authorize-id", Pkg: "internal/identity", File: "tls.go",
		From: "\t\tif id != want {",
		To:   "\t\tif id.TrustDomain() != want.TrustDomain() {",
		Why:  "a client expecting svc/orders accepts any workload of the trust domain as the server",
	},
	{
		ID: "identity/member-of", Pkg: "internal/identity", File: "tls.go",
		From: "\t\tif !id.MemberOf(td) {",
		To:   "\t\tif id.IsZero() {",
		Why:  "a peer of another trust domain is authorized as a member",
	},
	{
		ID: "identity/revoked-intermediate", Pkg: "internal/identity", File: "tls.go",
		From: "for i, c := range chain[:len(chain)-1] {",
		To:   "for i, c := range chain[:1] {",
		Why:  "a leaf under a revoked intermediate is accepted",
	},
	{
		ID: "identity/revoked-leaf", Pkg: "internal/identity", File: "tls.go",
		From: "\t\tcase !revoked(sn):\n",
		To:   "\t\tcase !revoked(sn) || i == 0:\n",
		Why:  "a revoked SVID is accepted",
	},
	{
		ID: "identity/server-tls12", Pkg: "internal/identity", File: "tls.go",
		From: "\t\tMinVersion:       tls.VersionTLS13,",
		To:   "\t\tMinVersion:       tls.VersionTLS12,",
		Why:  "mesh servers accept TLS 1.2",
	},
	{
		ID: "identity/client-tls12", Pkg: "internal/identity", File: "tls.go",
		From: "\t\tMinVersion: tls.VersionTLS13,\n\t\t// The default verification",
		To:   "\t\tMinVersion: tls.VersionTLS12,\n\t\t// The default verification",
		Why:  "the mesh client accepts a TLS 1.2 server (issue 19 item 7)",
	},
	{
		ID: "identity/expired-leaf", Pkg: "internal/identity", File: "bundle.go",
		From: "\tcase now.After(leaf.NotAfter):",
		To:   "\tcase now.After(leaf.NotAfter.Add(24 * time.Hour)):",
		Why:  "an expired SVID is accepted for another day",
	},
	{
		ID: "identity/foreign-domain", Pkg: "internal/identity", File: "bundle.go",
		From: "\tcase !id.MemberOf(b.TrustDomain):",
		To:   "\tcase id.IsZero():",
		Why:  "an SVID naming another trust domain, issued by our CA, is accepted",
	},
	{
		ID: "identity/ca-as-svid", Pkg: "internal/identity", File: "bundle.go",
		From: "\tif leaf.IsCA {",
		To:   "\tif leaf.IsCA && false {",
		Why:  "a CA certificate is accepted as a workload's SVID",
	},

	{
		ID: "ca/renew-revoked", Pkg: "internal/ca", File: "issue.go",
		From: "\tcase rec.Revoked():\n",
		To:   "\tcase rec.Revoked() && false:\n",
		Why:  "a revoked SVID renews itself into a fresh, unrevoked one",
		Harmless: "defence in depth: the store records a renewal only in a transaction that " +
			"re-checks the presented SVID under the revocation lock, and refuses it as revoked",
	},
	{
		ID: "ca/renew-operator", Pkg: "internal/ca", File: "issue.go",
		From: "\tif err := c.CheckWorkloadID(id); err != nil {\n\t\treturn nil, id.String(), refuse(\"bad_credential\", \"only workload SVIDs renew here\", err)",
		To:   "\tif err := c.CheckWorkloadID(id); err != nil && false {\n\t\treturn nil, id.String(), refuse(\"bad_credential\", \"only workload SVIDs renew here\", err)",
		Why:  "an operator's credential renews through the workload endpoint, outliving its role's limits",
	},

	// internal/audit: verification of the hash-chained log.
	{
		Run: auditVerifyTests, ID: "audit/hash-mismatch", Pkg: "internal/audit", File: "format.go",
		From: "\tif d.Sum(h[:0]); h != e.Hash {",
		To:   "\tif d.Sum(h[:0]); false {",
		Why:  "a record edited in place verifies",
	},
	{
		Run: auditVerifyTests, ID: "audit/chain-break", Pkg: "internal/audit", File: "verify.go",
		From: "\tif e.Prev != v.prev && !v.resyncing {",
		To:   "\tif e.Prev != v.prev && !v.resyncing && e.Kind == kindHeader {",
		Why:  "a record whose prev hash does not follow the chain verifies",
	},
	{
		Run: auditVerifyTests, ID: "audit/seq-gap", Pkg: "internal/audit", File: "verify.go",
		From: "\t\tcase e.Seq == v.seq+1:\n",
		To:   "\t\tcase e.Seq >= v.seq+1:\n",
		Why:  "records deleted from the end of a segment, chain recomputed, verify",
	},
	{
		Run: auditVerifyTests, ID: "audit/checkpoint-signature", Pkg: "internal/audit", File: "checkpoint.go",
		From: "\t\tif !ecdsa.VerifyASN1(k, d[:], e.Sig) {",
		To:   "\t\tif !ecdsa.VerifyASN1(k, d[:], e.Sig) && false {",
		Why:  "a checkpoint signed by another key verifies",
	},
	{
		Run: auditVerifyTests, ID: "audit/missing-segment", Pkg: "internal/audit", File: "verify.go",
		From: "\t\tif i > 0 && s.Num != segs[i-1].Num+1 {",
		To:   "\t\tif i > 0 && s.Num <= segs[i-1].Num {",
		Why:  "a whole segment deleted from the middle of the log goes unnoticed",
		Harmless: "defence in depth: the next segment's header does not continue the hash chain, " +
			"which is reported as the same problem (missing_segment) at that header",
	},
	{
		ID: "audit/retention-deletes-unshipped", Pkg: "internal/audit", File: "index.go",
		From: "\t\tif w.opts.Shipped != nil && (held > 0 || idx.Last > shipped) {",
		To:   "\t\tif w.opts.Shipped != nil && false {",
		Run:  "Retention|Unshipped",
		Why:  "retention deletes records the server never acknowledged (issue 12 finding 11)",
	},
	{
		ID: "audit/err-after-close", Pkg: "internal/audit", File: "writer.go",
		From: "\tif w.isClosed.Load() {\n\t\treturn ErrClosed",
		To:   "\tif w.isClosed.Load() && false {\n\t\treturn ErrClosed",
		Run:  auditVerifyTests + "|Close|Err|Fail|Disk",
		Why:  "a closed log says it can record, so a proxy forwards what nothing will record",
	},
	{
		ID: "audit/sync-always-ignored", Pkg: "internal/audit", File: "writer.go",
		From: "\tif w.opts.SyncInterval != SyncAlways {\n\t\treturn w.appendBuffered(ctx, &e)",
		To:   "\tif true {\n\t\treturn w.appendBuffered(ctx, &e)",
		Run:  "SyncAlways|Fsync|Blocked",
		Why:  "a log asked to fsync every record returns before the fsync: a power loss takes acknowledged control-plane events (issue 13 finding 2)",
	},
	{
		ID: "audit/no-background-fsync", Pkg: "internal/audit", File: "writer.go",
		From: "\tif !w.dirty.Swap(false) {\n\t\treturn\n\t}",
		To:   "\tif true {\n\t\treturn\n\t}",
		Run:  "Interval",
		Why:  "records appended with a sync interval are never fsynced until Close: a power loss takes far more than the interval (issue 13 finding 2)",
	},
	{
		ID: "control/audit-log-not-synced", Pkg: "internal/control", File: "serve.go",
		From: "SyncInterval: audit.SyncAlways, ",
		To:   "",
		Run:  "TestControlPlaneEventsFsyncedBeforeAnswer",
		Why:  "the server answers before its control-plane event is fsynced (issue 13 finding 2)",
	},

	// internal/role: the proxies' audit spool.
	{
		ID: "role/spool-ready-always", Pkg: "internal/role", File: "spool.go",
		From: "func (s *spool) Ready() error { return s.w.Err() }",
		To:   "func (s *spool) Ready() error { return nil }",
		Run:  "Spool|Ready|ProxyAudit",
		Why:  "the spool says it can record while its disk fails, so the gateway serves what it cannot record (issue 19 item 5)",
	},

	// internal/cli: the credentials it writes.
	{
		ID: "cli/admin-credential-mode", Pkg: "internal/cli", File: "admin.go",
		From: "\t\t\tif err := atomicfile.Write(out, data, 0o600); err != nil {",
		To:   "\t\t\tif err := atomicfile.Write(out, data, 0o644); err != nil {",
		Run:  "Admin",
		Why:  "ward admin create writes the operator's private key world-readable (issue 19 item 8)",
	},

	// internal/sidecar: the mesh's inbound side.
	{
		ID: "sidecar/l4-fails-open", Pkg: "internal/sidecar", File: "l4.go",
		From: "\tif err := s.emit(ctx, ev); err != nil {",
		To:   "\tif err := s.emit(ctx, ev); err != nil && false {",
		Run:  "L4|FailClosed",
		Why:  "a TCP stream reaches the app though its audit record could not be written (issue 12 finding 5)",
	},
	{
		ID: "sidecar/http2-unchecked", Pkg: "internal/sidecar", File: "hygiene.go",
		From: "\tif err := s.guard.Check(r); err != nil {",
		To:   "\tif err := s.guard.Check(r); err != nil && false {",
		Run:  sidecarTests,
		Why:  "HTTP/2 requests between services skip the header rules (issue 12 finding 3)",
	},
	{
		ID: "sidecar/strip-after-policy", Pkg: "internal/sidecar", File: "hygiene.go",
		From: "\tproxy.StripWard(r.Header)\n\tr.Header.Del(\"Proxy\")",
		To:   "\t_ = proxy.StripWard\n\tr.Header.Del(\"Proxy\")",
		Run:  sidecarTests,
		Why:  "a mesh caller's X-Ward-* headers reach policy conditions and the app (issue 12 finding 11)",
	},
	{
		ID: "sidecar/connection-drops-ward", Pkg: "internal/sidecar", File: "app.go",
		From: "proxy.RestoreWard(pr.Out.Header, pr.In.Header)",
		To:   "proxy.RestoreWard(pr.Out.Header, pr.Out.Header)",
		Run:  sidecarTests,
		Why:  "Connection: X-Ward-Peer-Id keeps Ward's headers from the app (issue 12 finding 7)",
	},
	{
		ID: "sidecar/path-encoded-twice", Pkg: "internal/sidecar", File: "inbound.go",
		From: "\tproxy.SetPath(r.URL, path)",
		To:   "\tr.URL.Path, r.URL.RawPath = path, \"\"",
		Run:  sidecarTests,
		Why:  "the app receives /a%2520b where policy decided on /a%20b (issue 12 finding 10)",
	},

	// internal/pipeline: the one request path of gateway and sidecar.
	{
		ID: "pipeline/refusal-goes-on", Pkg: "internal/pipeline", File: "pipeline.go",
		From: "\t\tif ref := p.cfg.Stages[i].Run(x); ref.Refused() {",
		To:   "\t\tif ref := p.cfg.Stages[i].Run(x); ref.Refused() && i < 0 {",
		Run:  "TestStagesRunInOrderAndStopAtARefusal",
		Why:  "a stage's refusal is ignored and the request reaches the next stage and the app",
	},
	{
		ID: "pipeline/unknown-reason-answers", Pkg: "internal/pipeline", File: "reason.go",
		From: "\t\treturn r\n\t}\n\treturn Internal",
		To:   "\t\treturn r\n\t}\n\treturn Reason{Code: code, Status: http.StatusOK}",
		Run:  "TestEveryReasonIsRegistered",
		Why:  "a refusal with an unregistered code answers 200 and echoes the code",
	},
	{
		ID: "pipeline/detail-to-client", Pkg: "internal/pipeline", File: "pipeline.go",
		From: "\t\t\t\tRender(&x.W, ref.Reason, x.ID)",
		To:   "\t\t\t\tRender(&x.W, Reason{Code: ref.Detail, Status: ref.Reason.Status}, x.ID)",
		Run:  "TestRenderSaysOnlyTheCode",
		Why:  "the operator's detail (it may quote a user or a key) reaches the client",
	},
	{
		ID: "sidecar/http-fails-open", Pkg: "internal/sidecar", File: "inbound.go",
		From: "\tif err := s.emit(x.R.Context(), ev); err != nil {",
		To:   "\tif err := s.emit(x.R.Context(), ev); err != nil && false {",
		Run:  "FailClosed",
		Why:  "a request reaches the app though its audit record could not be written",
	},

	// internal/mesh: the client to services' sidecars.
	{
		ID: "mesh/connection-drops-ward", Pkg: "internal/mesh", File: "client.go",
		From:    "proxy.RestoreWard(pr.Out.Header, pr.In.Header)",
		To:      "proxy.RestoreWard(pr.Out.Header, pr.Out.Header)",
		TestPkg: "internal/gateway", Run: "TestWardHeadersSurviveConnection",
		Why: "Connection: X-Ward-Identity keeps the user's identity token from the next sidecar (issue 12 finding 7)",
	},
	{
		ID: "mesh/error-text-leaks", Pkg: "internal/mesh", File: "client.go",
		From: "pipeline.Render(w, pipeline.Lookup(reason).WithStatus(status), id)",
		To:   "pipeline.Render(w, pipeline.Reason{Code: err.Error(), Status: status}, id)",
		Why:  "internet clients read the raw dial or TLS error, a port-probe oracle (issue 12 finding 11)",
	},

	// internal/edgetls: the plain-HTTP redirect.
	{
		ID: "edgetls/open-redirect", Pkg: "internal/edgetls", File: "redirect.go",
		From: "\t\tif !ok || !serves(certs, host) {",
		To:   "\t\tif !ok {",
		Run:  "Redirect",
		Why:  "the redirect sends any well-formed Host back as the target (issue 12 finding 11)",
	},

	// internal/waf and its stages: input inspection (issue 15).
	{
		ID: "waf/threshold-strict", Pkg: "internal/waf", File: "inspect.go",
		From: "res.Blocked = res.Score >= e.s.Threshold || unparsed",
		To:   "res.Blocked = res.Score > e.s.Threshold || unparsed",
		Why:  "a request whose score reaches the threshold exactly (one critical match) passes",
	},
	{
		ID: "waf/unparsed-body-passes", Pkg: "internal/waf", File: "inspect.go",
		From: "res.Blocked = res.Score >= e.s.Threshold || unparsed",
		To:   "res.Blocked = res.Score >= e.s.Threshold || unparsed && false",
		Why:  "a body the parser refused, and so the rules never read, passes uninspected",
	},
	{
		ID: "waf/over-bound-passes", Pkg: "internal/waf", File: "guard.go",
		From: "block := res.Blocked || (over && g.Over == Refuse)",
		To:   "block := res.Blocked",
		Why:  "a body over the inspection bound passes half-inspected though the setting says refuse",
	},
	{
		ID: "waf/dry-run-enforces-nothing", Pkg: "internal/waf", File: "guard.go",
		From: "case block && g.Mode == Enforce:",
		To:   "case block && g.Mode == Enforce && false:",
		Why:  "an enforcing route only records what it should refuse",
	},
	{
		ID: "gateway/waf-ignored", Pkg: "internal/gateway", File: "waf.go",
		From: "\tif f.Refuse {",
		To:   "\tif false {",
		Run:  "TestWAFPerRoute",
		Why:  "the gateway forwards a request its WAF refused",
	},
	{
		ID: "gateway/waf-body-unseen", Pkg: "internal/gateway", File: "waf.go",
		From: "body, _ = proxy.Buffered(x.R.Body)",
		To:   "body, _ = proxy.Buffered(nil)",
		Run:  "TestWAFPerRoute",
		Why:  "the gateway's WAF never sees request bodies, so injections in JSON and forms pass",
	},
	{
		ID: "sidecar/waf-ignored", Pkg: "internal/sidecar", File: "body.go",
		From: "\tif x.State.waf.Refuse {",
		To:   "\tif false {",
		Run:  "TestWAFAtTheSidecar",
		Why:  "a sidecar passes to its app a request its WAF refused",
	},
}

// auditVerifyTests are the audit package's tests of verification; the rest
// (syslog, crash loops, retention timing) take most of its run time and
// decide nothing about tampering.
const auditVerifyTests = "Verify|Tamper|Torn|Tail|Seal|Retention|Unsigned|RoundTrip"

// sidecarTests are the sidecar package's tests of what it refuses and
// what reaches the app.
const sidecarTests = "Hygiene|HTTP2|Malformed|Condition|Ward|Connection|Path|Forge|Inbound|Deny|Smuggl|FailClosed|L4|Bod|Revoked"
