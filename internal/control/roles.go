package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/store"
)

// access is what an operator endpoint requires of the caller's role.
type access int

const (
	// accessRead: any role (admin, developer, auditor).
	accessRead access = iota
	// accessResources: admins, and developers for the services they own
	// (the change itself is checked by mayChange).
	accessResources
	// accessAdmin: admins only (the CA, join tokens, API keys, operators).
	accessAdmin
)

// Limits on operator credentials.
const (
	defaultOperatorTTL = operatorTTL
	maxOperatorTTL     = 90 * 24 * time.Hour
)

// operatorName returns NAME of spiffe://TD/user/NAME.
func operatorName(id spiffeid.ID) (string, bool) {
	name, ok := strings.CutPrefix(id.Path(), "/user/")
	return name, ok && name != "" && !strings.Contains(name, "/")
}

// role returns the operator record of name. The bootstrap credential's
// operator is always an admin; any other operator must have been created
// with `ward admin create`, and their role is read on every request, so a
// change of role takes effect at once.
func (h *Handler) role(ctx context.Context, name string) (store.Operator, error) {
	if name == BootstrapAdmin {
		return store.Operator{Name: name, Role: RoleAdmin, CreatedBy: "server"}, nil
	}
	op, err := h.Store.GetOperator(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return op, &httpError{status: http.StatusForbidden, code: "unknown_operator", msg: fmt.Sprintf("operator %q has no role (create one with `ward admin create`)", name)}
	}
	return op, err
}

func allows(role string, need access) bool {
	switch role {
	case RoleAdmin:
		return true
	case RoleDeveloper:
		return need <= accessResources
	case RoleAuditor:
		return need == accessRead
	}
	return false
}

// operator admits operator credentials (spiffe://<td>/user/<name>) whose
// role grants need. Every refusal is audited.
func (h *Handler) operator(need access, next idHandler) http.HandlerFunc {
	return h.workload(func(w http.ResponseWriter, r *http.Request, id spiffeid.ID) {
		name, ok := operatorName(id)
		var err error
		if !ok {
			err = &httpError{status: http.StatusForbidden, code: "not_operator", msg: id.String() + " is not an operator"}
		} else {
			err = h.mayOperator(r, name, need)
		}
		if err != nil {
			h.denied(r.Context(), audit.Event{Type: "control.rbac", Actor: id.String(), Subject: r.Method + " " + r.URL.Path, Source: remote(r)}, err)
			h.fail(w, r, err)
			return
		}
		next(w, r, id)
	})
}

// mayOperator returns nil when operator name's role grants need for r,
// else the refusal. The admin API and the dashboard both decide by it.
func (h *Handler) mayOperator(r *http.Request, name string, need access) error {
	op, err := h.role(r.Context(), name)
	if err == nil && !allows(op.Role, need) {
		err = &httpError{status: http.StatusForbidden, code: "role_forbids",
			msg: fmt.Sprintf("operator %q is a %s and may not %s %s", name, op.Role, verb(r.Method), r.URL.Path)}
	}
	return err
}

func verb(method string) string {
	if method == http.MethodGet || method == http.MethodHead {
		return "read"
	}
	return "change"
}

// mayChange checks that caller's role allows the change from old to next:
// admins may change anything; developers only objects that concern the
// services they own (a Service, the AccessPolicies targeting it, the
// Routes to it), both before and after the change, and never an Issuer.
//
// A developer's change must also leave alone every request at the edge
// that another team's Route answers, before or after: a request whose
// Route the change alters (by the gateway's own matching rule, on the
// whole resulting set) must go, before and after, to a Route of a service
// the developer owns or to none. So a developer may not shadow another
// team's Route (a host Route over their any-host one, a longer prefix
// inside theirs), nor hand requests to it by deleting or moving their
// own; the space no Route answers is theirs to claim.
func (h *Handler) mayChange(ctx context.Context, caller spiffeid.ID, old, next []resource.Object, changes []string) error {
	name, ok := operatorName(caller)
	if !ok {
		return &httpError{status: http.StatusForbidden, code: "not_operator", msg: caller.String() + " is not an operator"}
	}
	op, err := h.role(ctx, name)
	if err != nil {
		return err
	}
	switch op.Role {
	case RoleAdmin:
		return nil
	case RoleDeveloper:
	default:
		return &httpError{status: http.StatusForbidden, code: "role_forbids", msg: fmt.Sprintf("operator %q is a %s and may not change resources", name, op.Role)}
	}
	byKey := func(objs []resource.Object) map[string]*resource.Object {
		m := make(map[string]*resource.Object, len(objs))
		for i := range objs {
			m[resource.Key(&objs[i])] = &objs[i]
		}
		return m
	}
	before, after := byKey(old), byKey(next)
	for _, c := range changes {
		key := c[1:]
		for _, o := range []*resource.Object{before[key], after[key]} {
			if o == nil {
				continue
			}
			services := resource.Concerns(o)
			if len(services) == 0 {
				return &httpError{status: http.StatusForbidden, code: "role_forbids",
					msg: fmt.Sprintf("developer %q may not change %s: it concerns no single service, only admins change it", name, key)}
			}
			for _, s := range services {
				if !slices.Contains(op.Services, s) {
					return &httpError{status: http.StatusForbidden, code: "not_owner",
						msg: fmt.Sprintf("developer %q may not change %s: it concerns service %q, and they own %s", name, key, s, ownedList(op.Services))}
				}
			}
		}
	}
	for _, rr := range resource.Reroutes(old, next) {
		for _, o := range []*resource.Object{rr.Before, rr.After} {
			if o == nil {
				continue
			}
			for _, s := range resource.Concerns(o) {
				if !slices.Contains(op.Services, s) {
					return &httpError{status: http.StatusForbidden, code: "not_owner",
						msg: fmt.Sprintf("developer %q may not make this change: requests for %s would go to %s instead of %s, and Route %q leads to service %q while they own %s",
							name, requestText(rr), routeText(rr.After), routeText(rr.Before), o.Metadata.Name, s, ownedList(op.Services))}
				}
			}
		}
	}
	return nil
}

// requestText names the requests of a Reroute by one of them.
func requestText(rr resource.Reroute) string {
	if rr.Host == "" {
		return rr.Path + " on any host"
	}
	return fmt.Sprintf("%s on host %q", rr.Path, rr.Host)
}

// routeText names a Route and its service, or says there is none.
func routeText(o *resource.Object) string {
	if o == nil {
		return "no Route"
	}
	services := resource.Concerns(o)
	return fmt.Sprintf("Route %q (service %s)", o.Metadata.Name, strings.Join(services, ", "))
}

func ownedList(s []string) string {
	if len(s) == 0 {
		return "no service"
	}
	return strings.Join(s, ", ")
}

func operatorInfo(td spiffeid.TrustDomain, op store.Operator) OperatorInfo {
	id, _ := spiffeid.FromSegments(td, "user", op.Name)
	return OperatorInfo{Name: op.Name, ID: id.String(), Role: op.Role, Services: op.Services, CreatedBy: op.CreatedBy, CreatedAt: op.CreatedAt}
}

// checkOperatorRequest validates everything but the CSR.
func checkOperatorRequest(req OperatorRequest) (ttl time.Duration, err error) {
	switch {
	case !isLabel(req.Name):
		return 0, badRequest("bad_name", fmt.Sprintf("operator name %q must be a DNS label (lowercase letters, digits, '-')", req.Name))
	case req.Name == BootstrapAdmin:
		return 0, badRequest("reserved_name", fmt.Sprintf("%q is the bootstrap credential's operator; choose another name", BootstrapAdmin))
	case req.Role != RoleAdmin && req.Role != RoleDeveloper && req.Role != RoleAuditor:
		return 0, badRequest("bad_role", fmt.Sprintf("role %q: use admin, developer or auditor", req.Role))
	case req.Role != RoleDeveloper && len(req.Services) > 0:
		return 0, badRequest("bad_services", "only developers own services")
	}
	for _, s := range req.Services {
		if !isLabel(s) {
			return 0, badRequest("bad_services", fmt.Sprintf("service name %q must be a DNS label", s))
		}
	}
	ttl = defaultOperatorTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > maxOperatorTTL {
			return 0, badRequest("bad_ttl", fmt.Sprintf("ttl %q: a Go duration up to %s", req.TTL, maxOperatorTTL))
		}
	}
	return ttl, nil
}

func (h *Handler) createOperator(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ev := audit.Event{Type: "operator.create", Actor: caller.String(), Source: remote(r)}
	var req OperatorRequest
	resp, err := func() (OperatorCreated, error) {
		if err := decode(w, r, &req); err != nil {
			return OperatorCreated{}, err
		}
		ev.Subject = req.Name
		ttl, err := checkOperatorRequest(req)
		if err != nil {
			return OperatorCreated{}, err
		}
		td := h.CA.TrustDomain()
		id, err := spiffeid.FromSegments(td, "user", req.Name)
		if err != nil {
			return OperatorCreated{}, badRequest("bad_name", err.Error())
		}
		ev.Subject = id.String()
		csr, err := ca.ParseCSR(req.CSR, id)
		if err != nil {
			return OperatorCreated{}, err
		}
		services := slices.Clone(req.Services)
		slices.Sort(services)
		services = slices.Compact(services)
		op := store.Operator{Name: req.Name, Role: req.Role, Services: services, CreatedBy: caller.String(), CreatedAt: time.Now()}
		if err := h.Store.PutOperator(r.Context(), op); err != nil {
			return OperatorCreated{}, err
		}
		iss, err := h.CA.IssueOperator(r.Context(), req.Name, csr.PublicKey, ttl)
		if err != nil {
			return OperatorCreated{}, err
		}
		ev.Fields = map[string]string{"role": op.Role, "services": strings.Join(op.Services, ","), "serial": ca.SerialText(iss.Cert.SerialNumber)}
		return OperatorCreated{Operator: operatorInfo(td, op), Chain: string(iss.ChainPEM()), NotAfter: iss.Cert.NotAfter}, nil
	}()
	if err != nil {
		h.denied(r.Context(), ev, err)
		h.fail(w, r, err)
		return
	}
	ev.Decision = "allow"
	h.emit(r.Context(), ev)
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) listOperators(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	ops, err := h.Store.ListOperators(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	td := h.CA.TrustDomain()
	boot, _ := h.role(r.Context(), BootstrapAdmin)
	out := []OperatorInfo{operatorInfo(td, boot)}
	for _, op := range ops {
		out = append(out, operatorInfo(td, op))
	}
	writeJSON(w, http.StatusOK, out)
}
