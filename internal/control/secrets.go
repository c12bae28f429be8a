package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/vault"
)

// The vault's endpoints. A secret's path follows the prefix, as is.
const (
	// PathSecret: GET ?version=N, any workload or operator a
	// SecretPolicy names as a reader: SecretValue.
	PathSecret = "/v1/secret/"
	// PathSecrets: GET ?prefix= lists (operator, any role); PUT /PATH
	// with the raw value as body writes a new version (?existing=1: only
	// if the secret exists, as `ward secret rotate` does); DELETE /PATH
	// makes a tombstone (admins, and developers under their services).
	PathSecrets = "/v1/secrets"
	// PathSecretVersions: GET /PATH, operator, any role.
	PathSecretVersions = "/v1/secret-versions/"
	// PathVault: GET, operator: VaultStatus.
	PathVault = "/v1/vault"
	// PathVaultUnseal: POST KEKRequest, admins: unseals the vault.
	PathVaultUnseal = "/v1/vault/unseal"
	// PathVaultRotateKEK: POST KEKRequest, admins: rewraps every data
	// key with a new key-encryption key.
	PathVaultRotateKEK = "/v1/vault/rotate-kek"
)

// SecretValue is a secret released to a reader.
type SecretValue struct {
	vault.Version
	Value []byte `json:"value"` // base64 in JSON
}

// SecretList answers a list: paths and versions, never a value.
type SecretList struct {
	Secrets []vault.Info `json:"secrets"`
}

// SecretVersions answers a versions request.
type SecretVersions struct {
	Secret   vault.Info      `json:"secret"`
	Versions []vault.Version `json:"versions"`
}

// VaultStatus says whether the vault is sealed.
type VaultStatus struct {
	Sealed bool `json:"sealed"`
}

// KEKRequest carries a key-encryption key, base64 of 32 bytes.
type KEKRequest struct {
	KEK string `json:"kek"`
}

// KEKRotated answers a KEK rotation.
type KEKRotated struct {
	Rewrapped int `json:"rewrapped"`
}

// vaultRoutes registers the vault's endpoints on mux.
func (h *Handler) vaultRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathSecret+"{path...}", h.readSecret)
	mux.HandleFunc("GET "+PathSecrets, h.operator(accessRead, h.unsealed(h.listSecrets)))
	mux.HandleFunc("PUT "+PathSecrets+"/{path...}", h.operator(accessResources, h.recordedChange(h.unsealed(h.putSecret))))
	mux.HandleFunc("DELETE "+PathSecrets+"/{path...}", h.operator(accessResources, h.recordedChange(h.unsealed(h.deleteSecret))))
	mux.HandleFunc("GET "+PathSecretVersions+"{path...}", h.operator(accessRead, h.unsealed(h.secretVersions)))
	mux.HandleFunc("GET "+PathVault, h.operator(accessRead, h.vaultStatus))
	mux.HandleFunc("POST "+PathVaultUnseal, h.operator(accessAdmin, h.unseal))
	mux.HandleFunc("POST "+PathVaultRotateKEK, h.operator(accessAdmin, h.unsealed(h.rotateKEK)))
}

// secretPaths refuses, before the mux would clean and redirect them, the
// vault requests whose path holds an empty, "." or ".." segment: a
// client following the redirect would write or read another secret than
// the one it named.
func (h *Handler) secretPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, prefix := range []string{PathSecret, PathSecrets + "/", PathSecretVersions} {
			if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
				if err := vault.CheckPath(rest); err != nil {
					h.fail(w, r, vaultError(err))
					return
				}
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

var errSealed = &httpError{status: http.StatusServiceUnavailable, code: "vault_sealed",
	msg: "the vault is sealed: an admin unseals it with `ward secret unseal` (the key-encryption key on standard input)"}

// unsealed answers 503 vault_sealed while the vault is sealed: then only
// the status and unseal endpoints answer.
func (h *Handler) unsealed(next idHandler) idHandler {
	return func(w http.ResponseWriter, r *http.Request, id spiffeid.ID) {
		if h.Vault == nil || h.Vault.Sealed() {
			h.fail(w, r, errSealed)
			return
		}
		next(w, r, id)
	}
}

// recordedChange refuses a change (PUT, DELETE) while the audit log cannot
// record, as recorded does for POST.
func (h *Handler) recordedChange(next idHandler) idHandler {
	return func(w http.ResponseWriter, r *http.Request, id spiffeid.ID) {
		if h.Events != nil {
			if err := audit.Ready(h.Events); err != nil {
				h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "the audit log cannot record: " + err.Error()})
				return
			}
		}
		next(w, r, id)
	}
}

// vaultError maps the vault's errors to what a client is told.
func vaultError(err error) error {
	var pe *vault.PathError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return badRequest("bad_path", pe.Error())
	case errors.Is(err, vault.ErrSealed):
		return errSealed
	case errors.Is(err, vault.ErrTooLarge):
		return &httpError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: vault.ErrTooLarge.Error()}
	case errors.Is(err, vault.ErrEmpty):
		return badRequest("empty_value", "the secret value is empty")
	case errors.Is(err, vault.ErrDeleted):
		return &httpError{status: http.StatusNotFound, code: "deleted", msg: "the secret was deleted"}
	case errors.Is(err, vault.ErrNotFound):
		return &httpError{status: http.StatusNotFound, code: "not_found", msg: "no such secret"}
	case errors.Is(err, vault.ErrIntegrity):
		return &httpError{status: http.StatusInternalServerError, code: "integrity", msg: "the secret failed its integrity check; nothing was released", cause: err}
	case errors.Is(err, vault.ErrWrongKEK):
		return &httpError{status: http.StatusForbidden, code: "wrong_kek", msg: vault.ErrWrongKEK.Error()}
	}
	return err
}

// secretPath returns the request's secret path, checked.
func secretPath(r *http.Request) (string, error) {
	p := r.PathValue("path")
	if err := vault.CheckPath(p); err != nil {
		return p, vaultError(err)
	}
	return p, nil
}

// secretEvent emits e as allowed, or as denied with err's reason. It
// returns an error when an allowed read could not be recorded: then the
// value is not released.
func (h *Handler) secretEvent(ctx context.Context, e audit.Event, err error) error {
	if err != nil {
		h.denied(ctx, e, err)
		return nil
	}
	e.Decision = "allow"
	sink := h.Events
	if sink == nil {
		sink = audit.SlogSink{Log: h.Log}
	}
	if eerr := sink.Emit(ctx, e); eerr != nil {
		h.Log.Error("audit event not recorded", "type", e.Type, "err", eerr)
		return &httpError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "the audit log cannot record", cause: eerr}
	}
	return nil
}

// mayRead returns the SecretPolicy that lets id read path; default deny.
func (h *Handler) mayRead(ctx context.Context, id spiffeid.ID, path string) (string, error) {
	set, err := h.current(ctx)
	if err != nil {
		return "", err
	}
	for _, o := range set.objs {
		p, ok := o.Spec.(*resource.SecretPolicySpec)
		if !ok || o.Kind != resource.KindSecretPolicy {
			continue
		}
		if slices.ContainsFunc(p.Readers, func(r string) bool { return vault.MatchID(r, id.Path()) }) &&
			slices.ContainsFunc(p.Paths, func(pat string) bool { return vault.MatchPattern(pat, path) }) {
			return o.Metadata.Name, nil
		}
	}
	return "", &httpError{status: http.StatusForbidden, code: "secret_denied",
		msg: fmt.Sprintf("no SecretPolicy lets %s read %s", id, path)}
}

// readSecret releases a secret to an authenticated, unrevoked identity a
// SecretPolicy allows. Every read and refusal is audited, never the value.
func (h *Handler) readSecret(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev := audit.Event{Type: "secret.read", Subject: r.PathValue("path"), Source: remote(r)}
	sec, err := func() (*vault.Secret, error) {
		id, err := h.authenticate(r)
		if err != nil {
			return nil, err
		}
		ev.Actor = id.String()
		path, err := secretPath(r)
		if err != nil {
			return nil, err
		}
		version, err := optInt(r.URL.Query().Get("version"))
		if err != nil || version < 0 {
			return nil, badRequest("bad_version", "version must be a positive integer (omit it for the newest)")
		}
		if h.Vault == nil || h.Vault.Sealed() {
			return nil, errSealed
		}
		policy, err := h.mayRead(ctx, id, path)
		if err != nil {
			return nil, err
		}
		ev.Fields = map[string]string{"policy": policy}
		sec, err := h.Vault.Get(ctx, path, version)
		if err != nil {
			return nil, vaultError(err)
		}
		ev.Fields["version"] = strconv.FormatInt(sec.Version.Version, 10)
		return sec, nil
	}()
	if err := h.secretEvent(ctx, ev, err); err != nil {
		sec.Wipe()
		h.fail(w, r, err)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer sec.Wipe()
	body, err := json.Marshal(SecretValue{Version: sec.Version, Value: sec.Value})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer clear(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// mayManage checks that caller may write or delete path: admins anything,
// developers the secrets of the services they own (the path's first
// segment).
func (h *Handler) mayManage(ctx context.Context, caller spiffeid.ID, path string) error {
	name, _ := operatorName(caller)
	op, err := h.role(ctx, name)
	if err != nil {
		return err
	}
	if op.Role == RoleAdmin {
		return nil
	}
	if owner := vault.Owner(path); !slices.Contains(op.Services, owner) {
		return &httpError{status: http.StatusForbidden, code: "not_owner",
			msg: fmt.Sprintf("developer %q may not change secret %s: it belongs to service %q, and they own %s", name, path, owner, ownedList(op.Services))}
	}
	return nil
}

func (h *Handler) putSecret(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ctx := r.Context()
	existing := r.URL.Query().Get("existing") == "1"
	ev := audit.Event{Type: "secret.write", Actor: caller.String(), Subject: r.PathValue("path"), Source: remote(r)}
	if existing {
		ev.Type = "secret.rotate"
	}
	ver, err := func() (vault.Version, error) {
		path, err := secretPath(r)
		if err != nil {
			return vault.Version{}, err
		}
		if err := h.mayManage(ctx, caller, path); err != nil {
			return vault.Version{}, err
		}
		if existing {
			if _, _, err := h.Vault.Versions(ctx, path); err != nil {
				return vault.Version{}, vaultError(err)
			}
		}
		value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, vault.MaxValueBytes))
		defer clear(value)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return vault.Version{}, vaultError(vault.ErrTooLarge)
			}
			return vault.Version{}, badRequest("bad_body", "cannot read the value")
		}
		ver, err := h.Vault.Put(ctx, path, value, caller.String())
		return ver, vaultError(err)
	}()
	if err == nil {
		ev.Fields = map[string]string{"version": strconv.FormatInt(ver.Version, 10)}
	}
	if eerr := h.secretEvent(ctx, ev, err); eerr != nil {
		err = eerr
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ver)
}

func (h *Handler) deleteSecret(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ctx := r.Context()
	ev := audit.Event{Type: "secret.delete", Actor: caller.String(), Subject: r.PathValue("path"), Source: remote(r)}
	err := func() error {
		path, err := secretPath(r)
		if err != nil {
			return err
		}
		if err := h.mayManage(ctx, caller, path); err != nil {
			return err
		}
		return vaultError(h.Vault.Delete(ctx, path, caller.String()))
	}()
	if eerr := h.secretEvent(ctx, ev, err); eerr != nil {
		err = eerr
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("path"), "retention": h.Vault.Retention().String()})
}

func (h *Handler) listSecrets(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	list, err := h.Vault.List(r.Context(), r.URL.Query().Get("prefix"))
	if err != nil {
		h.fail(w, r, vaultError(err))
		return
	}
	if list == nil {
		list = []vault.Info{}
	}
	writeJSON(w, http.StatusOK, SecretList{Secrets: list})
}

func (h *Handler) secretVersions(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	path, err := secretPath(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	info, vs, err := h.Vault.Versions(r.Context(), path)
	if err != nil {
		h.fail(w, r, vaultError(err))
		return
	}
	writeJSON(w, http.StatusOK, SecretVersions{Secret: info, Versions: vs})
}

func (h *Handler) vaultStatus(w http.ResponseWriter, _ *http.Request, _ spiffeid.ID) {
	writeJSON(w, http.StatusOK, VaultStatus{Sealed: h.Vault == nil || h.Vault.Sealed()})
}

// kekOf decodes a KEKRequest's key.
func kekOf(w http.ResponseWriter, r *http.Request) (*ca.KEK, error) {
	var req KEKRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	kek, err := ca.ParseKEK(req.KEK)
	clear([]byte(req.KEK)) // a copy; the best Go allows for a string
	if err != nil {
		return nil, badRequest("bad_kek", "the key-encryption key must be base64 of 32 bytes")
	}
	return kek, nil
}

func (h *Handler) unseal(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	ev := audit.Event{Type: "vault.unseal.request", Actor: caller.String(), Source: remote(r)}
	err := func() error {
		if h.Vault == nil {
			return &httpError{status: http.StatusNotFound, code: "no_vault", msg: "this server has no vault"}
		}
		kek, err := kekOf(w, r)
		if err != nil {
			return err
		}
		return vaultError(h.Vault.Unseal(r.Context(), kek))
	}()
	if eerr := h.secretEvent(r.Context(), ev, err); eerr != nil {
		err = eerr
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, VaultStatus{Sealed: h.Vault.Sealed()})
}

func (h *Handler) rotateKEK(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	kek, err := kekOf(w, r)
	var n int
	if err == nil {
		n, err = h.Vault.RotateKEK(r.Context(), kek, caller.String())
		err = vaultError(err)
	}
	if err != nil {
		h.denied(r.Context(), audit.Event{Type: "vault.kek.rotate", Actor: caller.String(), Source: remote(r)}, err)
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, KEKRotated{Rewrapped: n})
}

// Client side.

func secretURL(prefix, path string) string {
	// Paths are checked by the server; a client never sends '?' or '#'
	// through: they are not in the grammar and are escaped here.
	return prefix + strings.NewReplacer("?", "%3F", "#", "%23", "%", "%25").Replace(path)
}

// GetSecret reads a secret (version 0: the newest) with the client's
// credential. The caller zeroes the returned value after use.
func (c *Client) GetSecret(ctx context.Context, path string, version int64) (*SecretValue, error) {
	if err := vault.CheckPath(path); err != nil {
		return nil, err
	}
	u := secretURL(PathSecret, path)
	if version > 0 {
		u += "?version=" + strconv.FormatInt(version, 10)
	}
	var data []byte
	if err := c.do(ctx, c.cred(), http.MethodGet, u, nil, &data); err != nil {
		return nil, err
	}
	defer clear(data)
	var out SecretValue
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode server answer: %w", err)
	}
	return &out, nil
}

// PutSecret writes value as a new version of path; with existing, only
// if the secret exists (a rotation).
func (c *Client) PutSecret(ctx context.Context, path string, value []byte, existing bool) (vault.Version, error) {
	if err := vault.CheckPath(path); err != nil {
		return vault.Version{}, err
	}
	u := secretURL(PathSecrets+"/", path)
	if existing {
		u += "?existing=1"
	}
	resp, err := c.send(ctx, c.cred(), http.MethodPut, u, false, bytes.NewReader(value))
	if err != nil {
		return vault.Version{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return vault.Version{}, err
	}
	var out vault.Version
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &ae.Body) != nil || ae.Body.Message == "" {
			ae.Body = Error{Code: "http", Message: http.StatusText(resp.StatusCode)}
		}
		return out, ae
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("decode server answer: %w", err)
	}
	return out, nil
}

// DeleteSecret makes path a tombstone.
func (c *Client) DeleteSecret(ctx context.Context, path string) error {
	if err := vault.CheckPath(path); err != nil {
		return err
	}
	return c.do(ctx, c.cred(), http.MethodDelete, secretURL(PathSecrets+"/", path), nil, nil)
}

// ListSecrets lists the secrets under prefix.
func (c *Client) ListSecrets(ctx context.Context, prefix string) (SecretList, error) {
	var out SecretList
	err := c.do(ctx, c.cred(), http.MethodGet, PathSecrets+"?prefix="+url.QueryEscape(prefix), nil, &out)
	return out, err
}

// SecretVersions lists the versions of a secret.
func (c *Client) SecretVersions(ctx context.Context, path string) (SecretVersions, error) {
	if err := vault.CheckPath(path); err != nil {
		return SecretVersions{}, err
	}
	var out SecretVersions
	err := c.do(ctx, c.cred(), http.MethodGet, secretURL(PathSecretVersions, path), nil, &out)
	return out, err
}

// VaultStatus says whether the vault is sealed.
func (c *Client) VaultStatus(ctx context.Context) (VaultStatus, error) {
	var out VaultStatus
	err := c.do(ctx, c.cred(), http.MethodGet, PathVault, nil, &out)
	return out, err
}

// Unseal gives the server the key-encryption key (base64).
func (c *Client) Unseal(ctx context.Context, kek string) (VaultStatus, error) {
	var out VaultStatus
	err := c.do(ctx, c.cred(), http.MethodPost, PathVaultUnseal, KEKRequest{KEK: kek}, &out)
	return out, err
}

// RotateKEK rewraps the vault's data keys with a new key-encryption key.
func (c *Client) RotateKEK(ctx context.Context, kek string) (KEKRotated, error) {
	var out KEKRotated
	err := c.do(ctx, c.cred(), http.MethodPost, PathVaultRotateKEK, KEKRequest{KEK: kek}, &out)
	return out, err
}

// openVault returns the server's vault, unsealed with kek when kek opens
// it. When it does not (the vault's KEK was rotated and the server was
// started with the previous one), the vault starts sealed and the rest of
// the server runs: an admin unseals it with the right key.
func openVault(ctx context.Context, st vault.Store, kek vault.KEK, events audit.Sink, log *slog.Logger) (*vault.Vault, error) {
	v := vault.New(vault.Config{Store: st, Events: events, Log: log})
	switch err := v.Unseal(ctx, kek); {
	case errors.Is(err, vault.ErrWrongKEK):
		log.Warn("the vault stays sealed: the server's key-encryption key does not open it; unseal it with `ward secret unseal`")
	case err != nil:
		return nil, fmt.Errorf("vault: %w", err)
	}
	return v, nil
}

// purgeSecrets removes the secrets deleted longer ago than the retention
// period (a leader-only job).
func (s *Server) purgeSecrets(ctx context.Context) {
	v := s.handler.Vault
	if v == nil || v.Sealed() {
		return
	}
	paths, err := v.Purge(ctx, time.Now())
	if err != nil && ctx.Err() == nil {
		s.cfg.Log.Warn("purging deleted secrets failed", "err", err)
	}
	if len(paths) > 0 {
		s.cfg.Log.Info("purged deleted secrets past their retention", "count", len(paths))
	}
}
