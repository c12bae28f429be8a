package control

import "time"

// Paths of the resource API, the snapshot feed and operator management.
const (
	PathResources = "/v1/resources"          // GET ?kind=K&name=N: the current set (or part), any operator
	PathApply     = "/v1/resources/apply"    // POST ApplyRequest
	PathDelete    = "/v1/resources/delete"   // POST DeleteRequest
	PathRollback  = "/v1/resources/rollback" // POST RollbackRequest
	PathHistory   = "/v1/resources/history"  // GET ?before=N&limit=N; GET .../history/{version}
	PathSnapshot  = "/v1/snapshot"           // GET ?after=N&wait=30s: a proxy's own part of the set
	PathOperators = "/v1/operators"          // GET (list), POST OperatorRequest (admin)
)

// Operator roles.
const (
	RoleAdmin     = "admin"     // everything
	RoleDeveloper = "developer" // read everything; change resources of the services they own
	RoleAuditor   = "auditor"   // read everything, change nothing
)

// ResourceFile is one file of resource documents as the operator wrote it;
// Name is used in file:line errors.
type ResourceFile struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

// ApplyRequest creates or replaces the objects of Files; objects not named
// stay as they are.
type ApplyRequest struct {
	Files []ResourceFile `json:"files"`
	// BaseVersion, when not zero, is the version the change was prepared
	// against (as `ward diff` showed it): the server refuses the change with
	// 409 stale_version if it has moved on since.
	BaseVersion int64 `json:"baseVersion,omitempty"`
	// DryRun validates and diffs the change without recording it.
	DryRun bool `json:"dryRun,omitempty"`
}

// DeleteRequest removes one object.
type DeleteRequest struct {
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	BaseVersion int64  `json:"baseVersion,omitempty"`
	DryRun      bool   `json:"dryRun,omitempty"`
}

// RollbackRequest makes the set of an earlier version current again, as a
// new version.
type RollbackRequest struct {
	Version     int64 `json:"version"`
	BaseVersion int64 `json:"baseVersion,omitempty"`
	DryRun      bool  `json:"dryRun,omitempty"`
}

// ChangeResponse says what a change did (or, with DryRun, would do).
type ChangeResponse struct {
	// Version is the version recorded by the change; on a dry run or a
	// change that changes nothing, the current version.
	Version  int64    `json:"version"`
	Previous int64    `json:"previous"`
	Changes  []string `json:"changes"` // "+Kind/name", "~Kind/name", "-Kind/name"
	Diff     string   `json:"diff"`
	DryRun   bool     `json:"dryRun,omitempty"`
}

// ResourcesResponse is the current set, or the part asked for, as YAML
// documents.
type ResourcesResponse struct {
	Version   int64  `json:"version"`
	Documents string `json:"documents"`
}

// VersionInfo describes one version of the resource set.
type VersionInfo struct {
	Version   int64     `json:"version"`
	Time      time.Time `json:"time"`
	Author    string    `json:"author"`
	Action    string    `json:"action"`
	Changes   []string  `json:"changes"`
	Diff      string    `json:"diff,omitempty"`      // only for one version
	Documents string    `json:"documents,omitempty"` // only for one version
}

// HistoryResponse lists versions, newest first.
type HistoryResponse struct {
	Versions []VersionInfo `json:"versions"`
}

// SnapshotResponse is what a proxy watches: its own part of the resource
// set at a version. A sidecar gets its Service, the policies that protect
// it and the Services it may call; a gateway its Routes, Issuers, the
// Services they route to and those Services' policies.
type SnapshotResponse struct {
	Version int64 `json:"version"` // of the resource set
	// Cursor is where the proxy's next long poll starts (?after=): it
	// grows with the resource version and with changes to the registered
	// instances of the services the proxy reaches. Zero from a server
	// without it: Version is the cursor.
	Cursor    int64  `json:"cursor,omitempty"`
	Documents string `json:"documents"`
}

// Next is the cursor to long-poll from after s.
func (s SnapshotResponse) Next() int64 {
	if s.Cursor != 0 {
		return s.Cursor
	}
	return s.Version
}

// OperatorRequest creates (or re-creates) an operator and issues their
// client certificate for the public key of CSR.
type OperatorRequest struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Services []string `json:"services,omitempty"` // for developers: the services they own
	CSR      []byte   `json:"csr"`
	TTL      string   `json:"ttl,omitempty"` // Go duration; default 720h
}

// OperatorInfo describes an operator.
type OperatorInfo struct {
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	Services  []string  `json:"services,omitempty"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
}

// OperatorCreated returns the operator and their certificate chain (PEM,
// leaf first); the private key never left the caller.
type OperatorCreated struct {
	Operator OperatorInfo `json:"operator"`
	Chain    string       `json:"chain"`
	NotAfter time.Time    `json:"notAfter"`
}

// Problem is one located problem of a refused resource change.
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}
