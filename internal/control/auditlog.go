package control

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/store"
)

// Audit trail files in the data directory.
const (
	DirAudit          = "audit"         // the server's hash-chained audit log
	FileAuditKey      = "audit-key.pem" // signs the log's checkpoints; sealed with the KEK (0600)
	FileAuditPub      = "audit-pub.pem" // its public key, for `ward audit verify --key`
	PathAudit         = "/v1/audit"     // POST AuditBatch, mTLS with an SVID: records shipped by proxies
	maxAuditBatch     = 1000            // records per POST
	maxAuditBodyBytes = 8 << 20
)

// AuditBatch carries records from a proxy's local audit log, in order.
// LogID names that log: chosen at random when the log was created, so two
// replicas of a service, or one restarted with a new data directory, ship
// distinct logs, each numbered from 1.
//
// From is for the first batch of a log the server has not seen yet: the
// first seq the log still holds, when its older records were deleted after
// an earlier version of Ward (which numbered records per identity) shipped
// them. The server then takes the log from there instead of from 1.
type AuditBatch struct {
	LogID   string          `json:"log"`
	From    uint64          `json:"from,omitempty"`
	Records []ShippedRecord `json:"records"`
}

// ShippedRecord is one record of a proxy's log: its sequence number there
// and its event.
type ShippedRecord struct {
	Seq   uint64      `json:"seq"`
	Event audit.Event `json:"event"`
}

// AuditAck says up to which sequence number of the sender's log the server
// has recorded durably.
type AuditAck struct {
	Acked uint64 `json:"acked"`
}

// sealedAuditKeyPEM is the PEM type of the audit signing key at rest: its
// PKCS #8 form sealed with the key-encryption key (AES-256-GCM, the
// additional data auditKeyAAD), like the CA's keys.
const (
	sealedAuditKeyPEM = "WARD SEALED AUDIT KEY"
	auditKeyAAD       = "ward audit signing key"
)

// loadAuditKey opens the audit signing key, sealed with kek in
// <data-dir>/audit-key.pem, creating it on first start with its public
// half beside it. A plaintext key left by an earlier version is sealed in
// place (the same key: the log it signed still verifies).
func loadAuditKey(dataDir string, kek *ca.KEK, log *slog.Logger) (crypto.Signer, error) {
	path := filepath.Join(dataDir, FileAuditKey)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return key, saveAuditKey(dataDir, key, kek)
	case err != nil:
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	der := blk.Bytes
	switch blk.Type {
	case sealedAuditKeyPEM:
		if der, err = kek.Open(blk.Bytes, []byte(auditKeyAAD)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case "PRIVATE KEY":
	default:
		return nil, fmt.Errorf("%s: a %q PEM block, want %q", path, blk.Type, sealedAuditKeyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	if blk.Type == "PRIVATE KEY" {
		if err := saveAuditKey(dataDir, signer, kek); err != nil {
			return nil, fmt.Errorf("seal the plaintext %s: %w", path, err)
		}
		log.Info("audit signing key sealed with the key-encryption key", "file", path)
	}
	return signer, nil
}

// saveAuditKey writes key sealed with kek, and its public half.
func saveAuditKey(dataDir string, key crypto.Signer, kek *ca.KEK) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	sealed, err := kek.Seal(der, []byte(auditKeyAAD))
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, FileAuditPub), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dataDir, FileAuditKey), pem.EncodeToMemory(&pem.Block{Type: sealedAuditKeyPEM, Bytes: sealed}), 0o600)
}

// Limits on what proxies ship.
const (
	// MaxShippedSeq bounds a shipped record's sequence number: a log that
	// appended a million records a second would reach it after 285 years,
	// so a larger one is a forgery or a bug, not a record.
	MaxShippedSeq = 1 << 53
	// maxClockSkew is how far ahead of the server's clock a shipped
	// record's time may be.
	maxClockSkew = 5 * time.Minute
	// maxShippedAge is how old a shipped record's time may be: what a log
	// keeps (older records would be deleted by retention on arrival).
	maxShippedAge = audit.DefaultRetention
)

// logIDPattern is a log id: 128 random bits in lowercase hex.
var logIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// proxyEvents are the event types each kind of proxy records in its
// spool, and whether the event is about the proxy itself (its Subject is
// then the shipper's SPIFFE ID). Anything else is refused.
var proxyEvents = map[string]map[string]bool{
	"svc":     {"sidecar.request": true, "sidecar.connection": true, "sidecar.handshake": true, "config.reload": false},
	"gateway": {"gateway.request": true, "gateway.response": true, "config.reload": false},
}

// logLocks serializes the batches of one sending log, so that two
// concurrent posts of the same records (a retry racing the original) are
// recorded once.
type logLocks struct {
	mu    sync.Mutex
	locks map[string]*logLock
}

type logLock struct {
	sync.Mutex
	users int
}

func (l *logLocks) lock(key string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*logLock{}
	}
	k := l.locks[key]
	if k == nil {
		k = &logLock{}
		l.locks[key] = k
	}
	k.users++
	l.mu.Unlock()
	k.Lock()
	return func() {
		k.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
}

// checkBatch refuses what no proxy's log could have produced: a record
// numbered 0 or beyond MaxShippedSeq, seqs that do not go up by exactly
// one, an event type the caller's kind of proxy never records, a request
// record about another identity. The whole batch is refused.
func checkBatch(batch AuditBatch, caller spiffeid.ID, kind string) error {
	if !logIDPattern.MatchString(batch.LogID) {
		return badRequest("bad_log_id", "the batch must name its log: \"log\" is 32 lowercase hex digits chosen when the log was created")
	}
	if len(batch.Records) > maxAuditBatch {
		return badRequest("too_many", fmt.Sprintf("at most %d records per batch", maxAuditBatch))
	}
	if batch.From > MaxShippedSeq {
		return badRequest("bad_seq", fmt.Sprintf("from %d is not between 1 and %d", batch.From, uint64(MaxShippedSeq)))
	}
	types := proxyEvents[kind]
	for i, rec := range batch.Records {
		switch {
		case rec.Seq == 0 || rec.Seq > MaxShippedSeq:
			return badRequest("bad_seq", fmt.Sprintf("record %d: seq %d is not between 1 and %d", i, rec.Seq, uint64(MaxShippedSeq)))
		case i > 0 && rec.Seq != batch.Records[i-1].Seq+1:
			return badRequest("bad_order", fmt.Sprintf("record %d: seq %d after %d; a batch holds consecutive records of one log", i, rec.Seq, batch.Records[i-1].Seq))
		}
		self, ok := types[rec.Event.Type]
		if !ok {
			return badRequest("bad_event_type", fmt.Sprintf("record %d: a %s proxy does not record %q events", i, kind, rec.Event.Type))
		}
		if self && rec.Event.Subject != caller.String() {
			return badRequest("bad_subject", fmt.Sprintf("record %d: a %s event of %s must have itself as subject, not %q", i, rec.Event.Type, caller, rec.Event.Subject))
		}
	}
	return nil
}

// ingestAudit records a batch shipped by a proxy, once per record: the
// server keeps, per sending log (the caller's SPIFFE ID and the batch's
// log id), the highest seq it has recorded; records at or below it are
// skipped (a sender retries until it hears the ack), and the first one
// above it must be exactly the next (409 otherwise: a log never skips).
// A log the server has not seen starts at seq 1, or at the batch's From. Each record names its
// sender, authenticated by its SVID, in reported_by, and its place in the
// sender's log in reported_log and reported_seq. A time in the future
// beyond the allowed skew or older than a log keeps records is replaced
// by the time of receipt, the claim kept in claimed_time.
func (h *Handler) ingestAudit(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	kind, _, ok := proxyKind(caller)
	if !ok {
		err := &httpError{status: http.StatusForbidden, code: "not_proxy", msg: caller.String() + " is neither a sidecar (svc/NAME) nor a gateway (gateway/NAME); only proxies ship audit records"}
		h.denied(r.Context(), audit.Event{Type: "control.audit", Actor: caller.String(), Subject: r.URL.Path, Source: remote(r)}, err)
		h.fail(w, r, err)
		return
	}
	if h.AuditLog == nil {
		h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "no_audit_log", msg: "this server keeps no audit log"})
		return
	}
	var batch AuditBatch
	if err := decodeLimit(w, r, &batch, maxAuditBodyBytes); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := checkBatch(batch, caller, kind); err != nil {
		h.fail(w, r, err)
		return
	}
	key := "audit.shipped." + caller.String() + "#" + batch.LogID
	defer h.auditLocks.lock(key)()
	var acked uint64
	next := uint64(1) // the seq the log continues with
	switch v, err := h.Store.GetMeta(r.Context(), key); {
	case errors.Is(err, store.ErrNotFound):
		if batch.From > 1 {
			next, acked = batch.From, batch.From-1
			h.Log.Info("audit: a log shipped from an earlier version starts after seq 1", "reported_by", caller.String(), "log", batch.LogID, "from", batch.From)
		}
	case err != nil:
		h.fail(w, r, err)
		return
	default:
		if acked, err = strconv.ParseUint(v, 10, 64); err != nil {
			h.fail(w, r, fmt.Errorf("stored audit cursor of %s: %w", key, err))
			return
		}
		next = acked + 1
	}
	recs := batch.Records
	for len(recs) > 0 && recs[0].Seq <= acked {
		recs = recs[1:]
	}
	if len(recs) > 0 && recs[0].Seq != next {
		h.fail(w, r, &httpError{status: http.StatusConflict, code: "audit_gap",
			msg: fmt.Sprintf("log %s: seq %d is not %d, the next one the server expects", batch.LogID, recs[0].Seq, next)})
		return
	}
	start := acked
	var appendErr error
	for _, rec := range recs {
		e := rec.Event
		fields := make(map[string]string, len(e.Fields)+4)
		for k, v := range e.Fields {
			fields[k] = v
		}
		fields["reported_by"] = caller.String()
		fields["reported_log"] = batch.LogID
		fields["reported_seq"] = strconv.FormatUint(rec.Seq, 10)
		delete(fields, "claimed_time")
		if now := time.Now(); e.Time.IsZero() || e.Time.After(now.Add(maxClockSkew)) || e.Time.Before(now.Add(-maxShippedAge)) {
			fields["claimed_time"] = e.Time.UTC().Format(time.RFC3339Nano)
			e.Time = now
		}
		e.Fields = fields
		if _, appendErr = h.AuditLog.Append(r.Context(), e); appendErr != nil {
			break
		}
		acked = rec.Seq
		h.observe(r.Context(), &e)
	}
	// The cursor moves once per batch (also past the part recorded before
	// a failure); a crash between the appends and this write makes the
	// sender's retry record those again: at least once, never lost.
	if acked != start {
		if err := h.Store.SetMeta(context.WithoutCancel(r.Context()), key, strconv.FormatUint(acked, 10)); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if appendErr != nil {
		h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "audit log cannot record: " + appendErr.Error()})
		return
	}
	writeJSON(w, http.StatusOK, AuditAck{Acked: acked})
}
