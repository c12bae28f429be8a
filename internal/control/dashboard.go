package control

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/dashboard"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/suggest"
)

// PathDashboardLogin creates a one-time dashboard login link for the
// calling operator (POST, mTLS): `ward dashboard login`.
const PathDashboardLogin = "/v1/dashboard/login"

// DashboardLink is a login link: open URL in a browser before Expires.
type DashboardLink struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// Limits of the dashboard's reads.
const (
	maxAuditResults = 500
	whyWindow       = 7 * 24 * time.Hour
)

// dashboardLogin answers `ward dashboard login`: a link for the operator
// that asks, valid for dashboard.LinkTTL, usable once.
func (h *Handler) dashboardLogin(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	name, _ := operatorName(caller)
	tok, exp, err := h.Dashboard.NewLink(name)
	if err != nil {
		h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "busy", msg: err.Error()})
		return
	}
	h.emit(r.Context(), audit.Event{Type: "dashboard.link", Actor: caller.String(), Decision: "allow", Source: remote(r)})
	writeJSON(w, http.StatusOK, DashboardLink{URL: dashboard.LoginURL("https://"+r.Host, tok), Expires: exp})
}

// dashboardLoggedIn audits the use of a login link.
func (h *Handler) dashboardLoggedIn(ctx context.Context, operator, source string, ok bool) {
	e := audit.Event{Type: "dashboard.login", Decision: "allow", Source: source}
	if ok {
		if id, err := spiffeid.FromSegments(h.CA.TrustDomain(), "user", operator); err == nil {
			e.Actor = id.String()
		}
	} else {
		e.Decision, e.Reason = "deny", "bad_link"
	}
	h.emit(ctx, e)
}

// DashboardLogin asks the server for a dashboard login link.
func (c *Client) DashboardLogin(ctx context.Context) (DashboardLink, error) {
	var out DashboardLink
	err := c.do(ctx, c.cred(), http.MethodPost, PathDashboardLogin, struct{}{}, &out)
	return out, err
}

// browser returns the dashboard's browser routes: pages and login from
// package dashboard, and its JSON routes here, each run as the session's
// operator through the same role check as the admin API.
func (h *Handler) browser() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /ui/api/graph", h.uiOperator(accessRead, h.uiGraph))
	api.HandleFunc("GET /ui/api/flows", h.uiOperator(accessRead, h.listFlows))
	api.HandleFunc("GET /ui/api/edge", h.uiOperator(accessRead, h.uiEdge))
	api.HandleFunc("GET /ui/api/why", h.uiOperator(accessRead, h.uiWhy))
	api.HandleFunc("GET /ui/api/suggest", h.uiOperator(accessRead, h.uiSuggest))
	api.HandleFunc("POST /ui/api/suggest/dry-run", h.uiOperator(accessResources, h.uiSuggestDryRun))
	api.HandleFunc("GET /ui/api/certs", h.uiOperator(accessRead, h.listCerts))
	api.HandleFunc("GET /ui/api/audit", h.uiOperator(accessRead, h.uiAudit))
	api.HandleFunc("GET /ui/api/bans", h.uiOperator(accessRead, h.uiBans))
	api.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no such dashboard route"})
	})
	return h.Dashboard.Handler(api)
}

// uiOperator admits the session's operator whose role grants need, as
// operator does for a client certificate. Every refusal is audited.
func (h *Handler) uiOperator(need access, next idHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := dashboard.Operator(r.Context())
		var id spiffeid.ID
		var err error
		if !ok {
			err = &httpError{status: http.StatusUnauthorized, code: "no_session", msg: "no dashboard session"}
		} else if id, err = spiffeid.FromSegments(h.CA.TrustDomain(), "user", name); err == nil {
			err = h.mayOperator(r, name, need)
		}
		if err != nil {
			h.denied(r.Context(), audit.Event{Type: "dashboard.rbac", Actor: id.String(), Subject: r.Method + " " + r.URL.Path, Source: remote(r)}, err)
			h.fail(w, r, err)
			return
		}
		next(w, r, id)
	}
}

// GraphNode is a service (or a kind of caller) of the service graph.
type GraphNode struct {
	Name  string `json:"name"`
	Group string `json:"group"`           // the first segment of the name: its namespace
	Owner string `json:"owner,omitempty"` // the developers who own the service, comma-separated
	In    uint64 `json:"in"`
	Out   uint64 `json:"out"`
}

// GraphEdge is the traffic from one caller to one service over a window.
type GraphEdge struct {
	Source    string  `json:"source"`
	Dest      string  `json:"dest"`
	Count     uint64  `json:"count"`
	Rate      float64 `json:"rate"`   // requests per second over the window
	Errors    uint64  `json:"errors"` // 5xx answers
	Allowed   uint64  `json:"allowed"`
	Denied    uint64  `json:"denied"`
	WouldDeny uint64  `json:"wouldDeny"`
	LatencyMS float64 `json:"latencyMs"` // mean
	// Mark is uncovered (no AccessPolicy targets the service), denied,
	// would-deny (a dry-run policy would deny some of it) or allowed.
	Mark string `json:"mark"`
}

// Graph is the service graph of a window.
type Graph struct {
	From  time.Time   `json:"from"`
	To    time.Time   `json:"to"`
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// BuildGraph folds a window's flows into nodes and edges; covered says
// whether an AccessPolicy targets a service.
func BuildGraph(win FlowWindow, covered func(service string) bool) Graph {
	g := Graph{From: win.From, To: win.To}
	secs := max(win.To.Sub(win.From).Seconds(), 1)
	idx := map[[2]string]int{}
	nodes := map[string]*GraphNode{}
	node := func(name string) *GraphNode {
		n := nodes[name]
		if n == nil {
			group, _, _ := strings.Cut(name, "/")
			if !strings.Contains(name, "/") {
				group, _, _ = strings.Cut(name, "-")
			}
			n = &GraphNode{Name: name, Group: group}
			nodes[name] = n
		}
		return n
	}
	lat := map[int]uint64{}
	for _, e := range win.Edges {
		src := e.Source
		if after, ok := strings.CutPrefix(src, "svc/"); ok {
			src = after // a service's sidecar reports its callers by ID path
		}
		k := [2]string{src, e.Dest}
		i, ok := idx[k]
		if !ok {
			i = len(g.Edges)
			idx[k] = i
			g.Edges = append(g.Edges, GraphEdge{Source: src, Dest: e.Dest})
		}
		ge := &g.Edges[i]
		ge.Count += e.Count
		lat[i] += e.LatencyUS
		if e.Class == 5 {
			ge.Errors += e.Count
		}
		switch e.Decision {
		case flows.Deny:
			ge.Denied += e.Count
		case flows.WouldDeny:
			ge.WouldDeny += e.Count
		default:
			ge.Allowed += e.Count
		}
		node(src).Out += e.Count
		node(e.Dest).In += e.Count
	}
	for i := range g.Edges {
		ge := &g.Edges[i]
		ge.Rate = float64(ge.Count) / secs
		if ge.Count > 0 {
			ge.LatencyMS = float64(lat[i]) / float64(ge.Count) / 1000
		}
		switch {
		case !covered(ge.Dest):
			ge.Mark = "uncovered"
		case ge.Denied > 0:
			ge.Mark = "denied"
		case ge.WouldDeny > 0:
			ge.Mark = "would-deny"
		default:
			ge.Mark = "allowed"
		}
	}
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	slices.SortFunc(g.Nodes, func(a, b GraphNode) int { return cmp.Compare(a.Name, b.Name) })
	return g
}

func (h *Handler) uiGraph(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	win, err := h.FlowWindow(r.Context(), r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	cur, err := h.current(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	targets := map[string]bool{}
	services := map[string]bool{}
	for _, o := range cur.objs {
		switch s := o.Spec.(type) {
		case *resource.AccessPolicySpec:
			targets[s.Target] = true
		case *resource.ServiceSpec:
			services[o.Metadata.Name] = true
		}
	}
	g := BuildGraph(win, func(svc string) bool {
		// What the gateway routes to a name that is no Service, or to
		// no route at all, is the gateway's refusal, not a gap in policy.
		return targets[svc] || !services[svc]
	})
	ops, err := h.Store.ListOperators(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	owners := map[string][]string{}
	for _, op := range ops {
		for _, svc := range op.Services {
			owners[svc] = append(owners[svc], op.Name)
		}
	}
	for i := range g.Nodes {
		g.Nodes[i].Owner = strings.Join(owners[g.Nodes[i].Name], ",")
	}
	writeJSON(w, http.StatusOK, g)
}

// EdgeDetail is one caller-to-service edge: its flows, and the latest
// audit records behind them.
type EdgeDetail struct {
	Flows   []flows.Record `json:"flows"`
	Records []AuditView    `json:"records"`
}

// AuditView is an audit record as the dashboard shows it: the request
// record's members among the fields, by their stored names.
type AuditView struct {
	Time      time.Time         `json:"time"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	Decision  string            `json:"decision,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Service   string            `json:"service,omitempty"`
	RequestID string            `json:"requestId,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

func auditViews(evs []audit.Event) []AuditView {
	out := make([]AuditView, len(evs))
	for i, e := range evs {
		id := e.RequestID
		if id == "" {
			id = e.Field("request_id")
		}
		out[i] = AuditView{Time: e.Time, Type: e.Type, Actor: e.Actor, Subject: e.Subject, Decision: e.Decision, Reason: e.Reason,
			Service: e.Service, RequestID: id, Fields: e.FieldMap()}
	}
	return out
}

func (h *Handler) uiEdge(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	q := r.URL.Query()
	src, dest := q.Get("source"), q.Get("dest")
	if src == "" || dest == "" {
		h.fail(w, r, badRequest("bad_query", "source and dest are required"))
		return
	}
	win, err := h.FlowWindow(r.Context(), r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var d EdgeDetail
	for _, e := range win.Edges {
		if e.Dest == dest && (e.Source == src || e.Source == "svc/"+src) {
			d.Flows = append(d.Flows, e)
		}
	}
	// A mesh caller is a SPIFFE ID; the gateway's callers are an API
	// key's application or "public" (anyone), in the gateway's records.
	f := audit.Filter{Since: win.From, Service: dest}
	switch {
	case strings.Contains(src, "/") || h.isService(r.Context(), src):
		p := src
		if !strings.Contains(p, "/") {
			p = "svc/" + p
		}
		id, err := spiffeid.FromPath(h.CA.TrustDomain(), "/"+p)
		if err != nil {
			h.fail(w, r, badRequest("bad_query", "source: "+err.Error()))
			return
		}
		f.Principal = id.String()
	case src == "public":
		f.Type = "gateway.request"
	default:
		f.Type, f.Principal = "gateway.request", src
	}
	recs, err := h.auditSearch(r.Context(), f, "", 50)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Records = auditViews(recs)
	writeJSON(w, http.StatusOK, d)
}

func (h *Handler) isService(ctx context.Context, name string) bool {
	cur, err := h.current(ctx)
	if err != nil {
		return false
	}
	for _, o := range cur.objs {
		if o.Kind == resource.KindService && o.Metadata.Name == name {
			return true
		}
	}
	return false
}

// auditSearch returns the newest records (at most limit) that match f
// and, when text is set, hold it in their request id, type, actor,
// subject, reason or fields.
func (h *Handler) auditSearch(ctx context.Context, f audit.Filter, text string, limit int) ([]audit.Event, error) {
	if h.AuditLog == nil {
		return nil, nil
	}
	var ring []audit.Event
	_, err := audit.Query(ctx, h.AuditLog.Dir(), f, func(rec audit.Record) error {
		e := rec.Event
		if text != "" && !matchText(&e, text) {
			return nil
		}
		ring = append(ring, e)
		if len(ring) > limit {
			ring = ring[1:]
		}
		return nil
	})
	for i, j := 0, len(ring)-1; i < j; i, j = i+1, j-1 {
		ring[i], ring[j] = ring[j], ring[i]
	}
	return ring, err
}

func matchText(e *audit.Event, text string) bool {
	if e.RequestID == text || strings.Contains(e.Type, text) || strings.Contains(e.Actor, text) || strings.Contains(e.Subject, text) ||
		strings.Contains(e.Reason, text) || e.Field("request_id") == text {
		return true
	}
	for _, v := range e.FieldMap() {
		if strings.Contains(v, text) {
			return true
		}
	}
	return false
}

// Why is what the records of one request say: who decided what, why.
type Why struct {
	RequestID string      `json:"requestId"`
	Records   []AuditView `json:"records"`
}

func (h *Handler) uiWhy(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	id := strings.TrimSpace(r.URL.Query().Get("request_id"))
	if id == "" || len(id) > 128 {
		h.fail(w, r, badRequest("bad_query", "request_id is required (at most 128 characters)"))
		return
	}
	var recs []audit.Event
	var err error
	if h.AuditLog != nil {
		_, err = audit.Query(r.Context(), h.AuditLog.Dir(), audit.Filter{Since: time.Now().Add(-whyWindow)}, func(rec audit.Record) error {
			if rec.Event.RequestID == id || rec.Event.Field("request_id") == id {
				recs = append(recs, rec.Event)
			}
			return nil
		})
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Why{RequestID: id, Records: auditViews(recs)})
}

// SuggestionView is a policy suggestion for the dashboard: the YAML
// `ward policy suggest` prints and the replay of the observed traffic.
type SuggestionView struct {
	YAML      string   `json:"yaml"`
	Edges     int      `json:"edges"`
	WouldDeny []string `json:"wouldDeny"`
}

func (h *Handler) uiSuggest(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	win, err := h.FlowWindow(r.Context(), r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	cur, err := h.current(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	service := r.URL.Query().Get("service")
	sugg := suggest.Suggest(win.Edges, cur.objs, service)
	v := SuggestionView{YAML: string(resource.Marshal(sugg)), WouldDeny: []string{}}
	for _, e := range win.Edges {
		if suggest.Observed(e) && (service == "" || e.Dest == service) {
			v.Edges++
		}
	}
	if len(sugg) > 0 {
		denied, err := suggest.Replay(h.CA.TrustDomain(), cur.objs, sugg, win.Edges)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, d := range denied {
			v.WouldDeny = append(v.WouldDeny, fmt.Sprintf("%s -> %s %s %s: %s", d.Edge.Source, d.Edge.Dest, d.Edge.Method, d.Edge.Path, d.Decision.Message))
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// uiSuggestDryRun applies a suggestion's YAML as a dry run: the change
// the admin API's apply would make, checked against the operator's role
// and services, recorded nowhere.
func (h *Handler) uiSuggestDryRun(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	var req struct {
		YAML string `json:"yaml"`
	}
	if err := decodeLimit(w, r, &req, maxApplyBytes); err != nil {
		h.fail(w, r, err)
		return
	}
	objs, err := parseFiles([]ResourceFile{{Name: "suggested.yaml", Data: req.YAML}})
	var resp ChangeResponse
	if err == nil {
		resp, err = h.apply(r.Context(), caller, change{action: "apply", dryRun: true,
			next: func(cur *resourceSet) ([]resource.Object, error) { return resource.Merge(cur.objs, objs), nil }})
	}
	h.changeDone(w, r, caller, "apply", resp, err)
}

func (h *Handler) uiAudit(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	q := r.URL.Query()
	f := audit.Filter{Type: q.Get("type"), Decision: q.Get("decision"), Service: q.Get("service"), Principal: q.Get("principal"), Reason: q.Get("reason")}
	f.Since = time.Now().Add(-24 * time.Hour)
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxFlowWindow {
			h.fail(w, r, badRequest("bad_query", "since: want a positive duration such as 1h, at most 744h"))
			return
		}
		f.Since = time.Now().Add(-d)
	}
	recs, err := h.auditSearch(r.Context(), f, q.Get("q"), maxAuditResults)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, auditViews(recs))
}

// banView is one active ban as the dashboard shows it.
type banView struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Target  string `json:"target"`
	Reason  string `json:"reason"`
	Expires string `json:"expires"`
	By      string `json:"by,omitempty"`
}

// uiBans lists the active bans and the detections of the last day.
func (h *Handler) uiBans(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	cur, err := h.current(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := time.Now()
	bans := []banView{}
	for _, o := range cur.objs {
		s, ok := o.Spec.(*resource.BanSpec)
		if !ok || o.Kind != resource.KindBan || !s.ExpiresAt().After(now) {
			continue
		}
		kind, target := banTarget(s)
		bans = append(bans, banView{Name: o.Metadata.Name, Kind: kind, Target: target, Reason: s.Reason, Expires: s.Expires, By: s.By})
	}
	recs, err := h.auditSearch(r.Context(), audit.Filter{Type: EventDetection, Since: now.Add(-24 * time.Hour)}, "", maxAuditResults)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": bans, "alerts": auditViews(recs)})
}
