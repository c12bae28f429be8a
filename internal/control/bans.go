package control

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/resource"
)

// Bans are resources (kind Ban): they are versioned, diffed and audited
// like every other, reach every proxy with the snapshot within a second,
// and stay in each proxy's last good snapshot across restarts. Only admins
// may add or lift one (a Ban concerns no service, see mayChange). Proxies
// stop enforcing a ban at its expiry on their own clock; the leader then
// removes it from the set, as the server, with a ban.expire record.

// banExpireEvery is how often the leader looks for expired bans.
const banExpireEvery = time.Second

// serverID is the identity under which the server changes the set itself.
func (h *Handler) serverID() spiffeid.ID {
	id, _ := spiffeid.FromSegments(h.CA.TrustDomain(), "ward", "server")
	return id
}

// ExpireBans removes expired bans until ctx ends (leader only).
func (h *Handler) ExpireBans(ctx context.Context) {
	t := time.NewTicker(banExpireEvery)
	defer t.Stop()
	for {
		if err := h.expireBans(ctx, time.Now()); err != nil && ctx.Err() == nil {
			h.Log.Warn("cannot remove expired bans", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expiredBans returns the objs without the bans expired at now, and
// whether there were any.
func expiredBans(objs []resource.Object, now time.Time) ([]resource.Object, bool) {
	out := make([]resource.Object, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.Spec.(*resource.BanSpec); ok && o.Kind == resource.KindBan && !s.ExpiresAt().After(now) {
			continue
		}
		out = append(out, o)
	}
	return out, len(out) != len(objs)
}

func (h *Handler) expireBans(ctx context.Context, now time.Time) error {
	cur, err := h.current(ctx)
	if err != nil {
		return err
	}
	if _, any := expiredBans(cur.objs, now); !any {
		return nil
	}
	_, err = h.apply(ctx, h.serverID(), change{action: "expire", system: true,
		next: func(cur *resourceSet) ([]resource.Object, error) {
			next, _ := expiredBans(cur.objs, now)
			return next, nil
		}})
	return err
}

// banTarget describes whom a ban names, for records and listings.
func banTarget(s *resource.BanSpec) (kind, value string) {
	switch {
	case s.Source != "":
		return "source", s.Source
	case s.APIKey != "":
		return "api_key", s.APIKey
	case s.User != (resource.BannedUser{}):
		return "user", s.User.Issuer + " " + s.User.Subject
	default:
		return "spiffe_id", s.SPIFFEID
	}
}

func bansOf(objs []resource.Object) map[string]*resource.BanSpec {
	m := map[string]*resource.BanSpec{}
	for _, o := range objs {
		if s, ok := o.Spec.(*resource.BanSpec); ok && o.Kind == resource.KindBan {
			m[o.Metadata.Name] = s
		}
	}
	return m
}

// auditBans records each ban a change added, changed, lifted or let
// expire, with whom it names, why, until when and who made it: ban.add,
// ban.change, ban.remove (an operator lifted it) and ban.expire.
func (h *Handler) auditBans(ctx context.Context, caller spiffeid.ID, action string, old, next []resource.Object, version int64) {
	before, after := bansOf(old), bansOf(next)
	emit := func(typ, name string, s *resource.BanSpec) {
		kind, value := banTarget(s)
		h.emit(ctx, audit.Event{Type: typ, Actor: caller.String(), Subject: resource.KindBan + "/" + name, Decision: "allow",
			Reason: action, Fields: map[string]string{
				"target": kind, "value": value, "expires": s.Expires, "reason": s.Reason, "by": s.By,
				"version": strconv.FormatInt(version, 10),
			}})
	}
	for _, name := range slices.Sorted(maps.Keys(after)) {
		s, prev := after[name], before[name]
		switch {
		case prev == nil:
			emit("ban.add", name, s)
		case *prev != *s:
			emit("ban.change", name, s)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if after[name] == nil {
			typ := "ban.remove"
			if action == "expire" {
				typ = "ban.expire"
			}
			emit(typ, name, before[name])
		}
	}
}
