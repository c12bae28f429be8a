package resource

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/audit"
)

// Snapshot is one version of a proxy's configuration as it arrives from
// the control plane (or its last good copy on disk).
type Snapshot struct {
	Origin  string // names the snapshot in errors and events, e.g. "server version 12"
	Version int64  // the control plane's version; 0 for a file
	Data    []byte // YAML resource documents
}

// FileWatcher re-reads a resource file and applies its changes.
type FileWatcher struct {
	Path     string
	Interval time.Duration
	Log      *slog.Logger
	// Events receives a config.reload event for every change applied or
	// refused, with the objects added, removed and changed; nil: none.
	Events audit.Sink
	// Subject names who reloads (the proxy's SPIFFE ID), for the events.
	Subject string
}

// Watch re-reads the file every Interval until ctx ends and calls apply
// with its contents whenever they differ from the last contents applied
// (initially those whose SHA-256 is applied, holding objs). apply
// validates and installs a new configuration and returns its objects;
// when it returns an error the file is refused with that error (file:line
// problems) in the log, the running configuration stays, and the same
// contents are not tried again. A file that cannot be read is logged and
// the configuration kept.
func (fw FileWatcher) Watch(ctx context.Context, applied [32]byte, objs []Object, apply func(data []byte) ([]Object, error)) {
	t := time.NewTicker(fw.Interval)
	defer t.Stop()
	var lastBad [32]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(fw.Path)
		if err != nil {
			fw.Log.Error("cannot read resource file; keeping the running configuration", "path", fw.Path, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if sum == applied || sum == lastBad {
			continue
		}
		next, err := apply(data)
		if err != nil {
			lastBad = sum
			fw.Log.Error("refusing invalid resource file; keeping the running configuration", "err", err)
			fw.emit(ctx, "deny", "invalid_config", sum, map[string]string{"error": err.Error()})
			continue
		}
		fw.emit(ctx, "allow", "", sum, map[string]string{"changes": strings.Join(Changes(objs, next), " "), "previous_sha256": hex.EncodeToString(applied[:])})
		applied, objs = sum, next
	}
}

func (fw FileWatcher) emit(ctx context.Context, decision, reason string, sum [32]byte, fields map[string]string) {
	fields["path"] = fw.Path
	fields["sha256"] = hex.EncodeToString(sum[:])
	EmitReload(ctx, fw.Events, fw.Log, fw.Subject, decision, reason, fields)
}

// EmitReload records a config.reload event (decision allow with the
// changes, or deny with reason invalid_config and the error) in events,
// if not nil; a failure to record is logged.
func EmitReload(ctx context.Context, events audit.Sink, log *slog.Logger, subject, decision, reason string, fields map[string]string) {
	if events == nil {
		return
	}
	e := audit.Event{Time: time.Now(), Type: "config.reload", Subject: subject, Decision: decision, Reason: reason, Fields: fields}
	if err := events.Emit(ctx, e); err != nil {
		log.Error("audit event not recorded", "type", e.Type, "err", err)
	}
}

// Changes lists what differs from old to new, object by object, sorted by
// kind and name: "+Kind/name" added, "-Kind/name" removed, "~Kind/name"
// changed.
func Changes(old, new []Object) []string {
	key := Key
	before := make(map[string]*Object, len(old))
	for i := range old {
		before[key(&old[i])] = &old[i]
	}
	var out []string
	seen := map[string]bool{}
	for i := range new {
		k := key(&new[i])
		seen[k] = true
		switch o, ok := before[k]; {
		case !ok:
			out = append(out, "+"+k)
		case !reflect.DeepEqual(o.Spec, new[i].Spec):
			out = append(out, "~"+k)
		}
	}
	for k := range before {
		if !seen[k] {
			out = append(out, "-"+k)
		}
	}
	// By kind and name, then by mark.
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(a[1:], b[1:]), cmp.Compare(a[0], b[0])) })
	return out
}
