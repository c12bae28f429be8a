package control

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/store"
)

// Limits of the resource API.
const (
	// maxApplyBytes bounds one apply request: room for a few files at
	// resource.MaxFileSize each, JSON-escaped.
	maxApplyBytes = 3 * resource.MaxFileSize
	// maxEventDiff bounds the diff carried in a change's audit event; the
	// full diff stays in the version (`ward history VERSION`), and the
	// event carries its SHA-256.
	maxEventDiff = 256 << 10
	// maxChangeAttempts bounds the retries of a change without a base
	// version that lost a race with a concurrent change.
	maxChangeAttempts = 3
)

// resourceSet is one parsed version of the resource set.
type resourceSet struct {
	version int64
	objs    []resource.Object
	parts   sync.Map // "kind/name" -> *proxyPart, see partFor
}

// resourceCache keeps the newest parsed set, so that proxies' snapshots and
// reads do not parse the same version again and again.
type resourceCache struct {
	mu  sync.Mutex
	set *resourceSet
}

// put caches s unless a newer version is cached already.
func (c *resourceCache) put(s *resourceSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil || c.set.version < s.version {
		c.set = s
	}
}

// current returns the newest version of the set (version 0, no objects,
// when nothing was applied yet).
func (h *Handler) current(ctx context.Context) (*resourceSet, error) {
	v, err := h.Store.ResourcesVersion(ctx)
	if err != nil {
		return nil, err
	}
	h.resCache.mu.Lock()
	defer h.resCache.mu.Unlock()
	if s := h.resCache.set; s != nil && s.version == v {
		return s, nil
	}
	if v == 0 {
		return &resourceSet{}, nil
	}
	rv, err := h.Store.LatestResourceVersion(ctx)
	if err != nil {
		return nil, err
	}
	s, err := parseVersion(rv)
	if err != nil {
		return nil, err
	}
	h.resCache.set = s
	return s, nil
}

// parseVersion parses a stored version. A stored version was validated
// before it was recorded, so an error here means the store was damaged.
func parseVersion(rv store.ResourceVersion) (*resourceSet, error) {
	objs, err := resource.ParseSet(versionOrigin(rv.Version), rv.Documents)
	if err != nil {
		return nil, fmt.Errorf("stored resource version %d does not parse: %w", rv.Version, err)
	}
	return &resourceSet{version: rv.Version, objs: objs}, nil
}

func versionOrigin(v int64) string { return "version " + strconv.FormatInt(v, 10) }

// invalid turns validation problems into the client's error.
func invalid(err error) *httpError {
	he := &httpError{status: http.StatusUnprocessableEntity, code: "invalid_resources", msg: "the resources are not valid", cause: err}
	for _, p := range resource.AsList(err) {
		he.problems = append(he.problems, Problem{File: p.File, Line: p.Line, Path: p.Path, Message: p.Msg})
	}
	if len(he.problems) == 1 {
		he.msg = resource.AsList(err)[0].Error()
	} else {
		he.msg = fmt.Sprintf("the resources have %d problems", len(he.problems))
	}
	return he
}

// validateSet checks a complete set as the proxies will compile it:
// references between objects, overlapping routes, and CEL that compiles.
func (h *Handler) validateSet(objs []resource.Object) error {
	if len(objs) > resource.MaxSetDocuments {
		return &httpError{status: http.StatusUnprocessableEntity, code: "set_too_large",
			msg: fmt.Sprintf("the set would hold %d objects, more than the %d a version may hold: delete some first", len(objs), resource.MaxSetDocuments)}
	}
	if err := resource.Validate(objs); err != nil {
		return invalid(err)
	}
	if _, err := policy.Compile(h.CA.TrustDomain(), objs); err != nil {
		return invalid(err)
	}
	return nil
}

// change is one proposed change of the resource set.
type change struct {
	action string // apply, delete, rollback
	base   int64  // 0: on whatever is current
	dryRun bool
	// system is a change the server makes itself (removing expired bans):
	// no operator role applies.
	system bool
	// next computes the new set from the current one.
	next func(cur *resourceSet) ([]resource.Object, error)
}

// apply runs a change for caller: it computes and validates the new set,
// checks that the caller's role may make it, and records it as a new
// version unless it is a dry run or changes nothing. A change prepared
// against a base version is refused when the set has moved on; one without
// a base is recomputed on the newer set (and validated again) when another
// change wins the race to record.
func (h *Handler) apply(ctx context.Context, caller spiffeid.ID, c change) (ChangeResponse, error) {
	for attempt := 1; ; attempt++ {
		cur, err := h.current(ctx)
		if err != nil {
			return ChangeResponse{}, err
		}
		if c.base != 0 && c.base != cur.version {
			return ChangeResponse{}, stale(c.base, cur.version)
		}
		next, err := c.next(cur)
		if err != nil {
			return ChangeResponse{}, err
		}
		if err := h.validateSet(next); err != nil {
			return ChangeResponse{}, err
		}
		changes := resource.Changes(cur.objs, next)
		if !c.system {
			if err := h.mayChange(ctx, caller, cur.objs, next, changes); err != nil {
				return ChangeResponse{}, err
			}
		}
		resp := ChangeResponse{Version: cur.version, Previous: cur.version, Changes: changes, DryRun: c.dryRun}
		if len(changes) == 0 {
			resp.Changes = []string{}
			return resp, nil
		}
		var documents []byte
		resp.Diff, documents = resource.Render(cur.objs, next)
		if c.dryRun {
			return resp, nil
		}
		v, err := h.Store.PutResourceVersion(ctx, cur.version, store.ResourceVersion{
			CreatedAt: time.Now(), Author: caller.String(), Action: c.action,
			Changes: changes, Diff: resp.Diff, Documents: documents,
		})
		if errors.Is(err, store.ErrConflict) {
			if c.base == 0 && attempt < maxChangeAttempts {
				continue
			}
			latest, verr := h.Store.ResourcesVersion(ctx)
			if verr != nil {
				return ChangeResponse{}, verr
			}
			return ChangeResponse{}, stale(cur.version, latest)
		}
		if err != nil {
			return ChangeResponse{}, err
		}
		resp.Version = v
		h.resCache.put(&resourceSet{version: v, objs: next}) // proxies ask for it next: no need to parse it back
		h.resources.set(v)
		h.auditChange(ctx, caller, c.action, resp)
		h.auditBans(ctx, caller, c.action, cur.objs, next, v)
		return resp, nil
	}
}

func stale(base, latest int64) *httpError {
	return &httpError{status: http.StatusConflict, code: "stale_version",
		msg: fmt.Sprintf("the change was prepared against version %d but the server is at version %d: run `ward diff` again and apply on the new version", base, latest)}
}

// auditChange records a change with who made it, what changed and the diff.
func (h *Handler) auditChange(ctx context.Context, caller spiffeid.ID, action string, resp ChangeResponse) {
	sum := sha256.Sum256([]byte(resp.Diff))
	fields := map[string]string{
		"version":     strconv.FormatInt(resp.Version, 10),
		"previous":    strconv.FormatInt(resp.Previous, 10),
		"changes":     strings.Join(resp.Changes, " "),
		"diff":        resp.Diff,
		"diff_sha256": hex.EncodeToString(sum[:]),
	}
	if len(resp.Diff) > maxEventDiff {
		fields["diff"] = resp.Diff[:maxEventDiff]
		fields["diff_truncated"] = "true"
	}
	h.emit(ctx, audit.Event{Type: "resource." + action, Actor: caller.String(), Subject: versionOrigin(resp.Version), Decision: "allow", Fields: fields})
}

// parseFiles parses the files of an apply; every problem of every file is
// reported together.
func parseFiles(files []ResourceFile) ([]resource.Object, error) {
	if len(files) == 0 {
		return nil, badRequest("no_files", "no resource files given")
	}
	var objs []resource.Object
	var problems resource.ErrorList
	for i, f := range files {
		name := f.Name
		if name == "" {
			name = fmt.Sprintf("file %d", i+1)
		}
		o, err := resource.Parse(name, []byte(f.Data))
		if err != nil {
			problems = append(problems, resource.AsList(err)...)
			continue
		}
		objs = append(objs, o...)
	}
	if err := problems.Err(); err != nil {
		return nil, invalid(err)
	}
	if len(objs) == 0 {
		return nil, badRequest("no_objects", "the files hold no resource documents")
	}
	return objs, nil
}

func (h *Handler) applyResources(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req ApplyRequest
	err := decodeLimit(w, r, &req, maxApplyBytes)
	var resp ChangeResponse
	if err == nil {
		var objs []resource.Object
		if objs, err = parseFiles(req.Files); err == nil {
			resp, err = h.apply(r.Context(), caller, change{action: "apply", base: req.BaseVersion, dryRun: req.DryRun,
				next: func(cur *resourceSet) ([]resource.Object, error) { return resource.Merge(cur.objs, objs), nil }})
		}
	}
	h.changeDone(w, r, caller, "apply", resp, err)
}

func (h *Handler) deleteResource(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req DeleteRequest
	err := decode(w, r, &req)
	var resp ChangeResponse
	if err == nil {
		resp, err = h.apply(r.Context(), caller, change{action: "delete", base: req.BaseVersion, dryRun: req.DryRun,
			next: func(cur *resourceSet) ([]resource.Object, error) {
				next, ok := resource.Remove(cur.objs, req.Kind, req.Name)
				if !ok {
					return nil, &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no %s named %q", req.Kind, req.Name)}
				}
				return next, nil
			}})
	}
	h.changeDone(w, r, caller, "delete", resp, err)
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req RollbackRequest
	err := decode(w, r, &req)
	var resp ChangeResponse
	if err == nil {
		resp, err = h.apply(r.Context(), caller, change{action: "rollback", base: req.BaseVersion, dryRun: req.DryRun,
			next: func(*resourceSet) ([]resource.Object, error) {
				rv, err := h.Store.GetResourceVersion(r.Context(), req.Version)
				if errors.Is(err, store.ErrNotFound) {
					return nil, &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no version %d", req.Version)}
				}
				if err != nil {
					return nil, err
				}
				old, err := parseVersion(rv)
				if err != nil {
					return nil, err
				}
				return old.objs, nil
			}})
	}
	h.changeDone(w, r, caller, "rollback", resp, err)
}

// changeDone answers a change; a refused one is audited with its reason.
func (h *Handler) changeDone(w http.ResponseWriter, r *http.Request, caller spiffeid.ID, action string, resp ChangeResponse, err error) {
	if err != nil {
		h.denied(r.Context(), audit.Event{Type: "resource." + action, Actor: caller.String(), Source: remote(r),
			Fields: map[string]string{"error": err.Error()}}, err)
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) getResources(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	cur, err := h.current(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	kind, name := r.URL.Query().Get("kind"), r.URL.Query().Get("name")
	all := cur.objs
	if strings.EqualFold(kind, resource.KindDetectionRule) {
		all = detect.WithDefaults(all) // the rules in force: Ward's defaults unless overridden
	}
	objs := all
	if kind != "" || name != "" {
		objs = nil
		for i := range all {
			o := &all[i]
			if (kind == "" || strings.EqualFold(o.Kind, kind)) && (name == "" || o.Metadata.Name == name) {
				objs = append(objs, *o)
			}
		}
		if name != "" && len(objs) == 0 {
			h.fail(w, r, &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no %s named %q", cmp.Or(kind, "object"), name)})
			return
		}
	}
	writeJSON(w, http.StatusOK, ResourcesResponse{Version: cur.version, Documents: string(resource.Marshal(objs))})
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	q := r.URL.Query()
	before, err1 := optInt(q.Get("before"))
	limit, err2 := optInt(q.Get("limit"))
	if err := errors.Join(err1, err2); err != nil || limit < 0 || limit > 1000 {
		h.fail(w, r, badRequest("bad_query", "before and limit must be whole numbers (limit at most 1000)"))
		return
	}
	vs, err := h.Store.ListResourceVersions(r.Context(), before, int(limit))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	resp := HistoryResponse{Versions: []VersionInfo{}}
	for _, v := range vs {
		resp.Versions = append(resp.Versions, versionInfo(v))
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) historyVersion(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	v, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil || v <= 0 {
		h.fail(w, r, badRequest("bad_version", "a version is a positive whole number"))
		return
	}
	rv, err := h.Store.GetResourceVersion(r.Context(), v)
	if errors.Is(err, store.ErrNotFound) {
		err = &httpError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no version %d", v)}
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	info := versionInfo(rv)
	info.Diff, info.Documents = rv.Diff, string(rv.Documents)
	writeJSON(w, http.StatusOK, info)
}

func versionInfo(v store.ResourceVersion) VersionInfo {
	changes := v.Changes
	if changes == nil {
		changes = []string{}
	}
	return VersionInfo{Version: v.Version, Time: v.CreatedAt, Author: v.Author, Action: v.Action, Changes: slices.Clone(changes)}
}

func optInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
