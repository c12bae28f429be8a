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
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/store"
)

// Audit trail files in the data directory.
const (
	DirAudit          = "audit"         // the server's hash-chained audit log
	FileAuditKey      = "audit-key.pem" // signs the log's checkpoints (0600)
	FileAuditPub      = "audit-pub.pem" // its public key, for `ward audit verify --key`
	PathAudit         = "/v1/audit"     // POST AuditBatch, mTLS with an SVID: records shipped by proxies
	maxAuditBatch     = 1000            // records per POST
	maxAuditBodyBytes = 8 << 20
)

// AuditBatch carries records from a proxy's local audit log, in order.
type AuditBatch struct {
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

// loadAuditKey reads the audit signing key, creating it on first start
// with its public half beside it.
func loadAuditKey(dataDir string) (crypto.Signer, error) {
	path := filepath.Join(dataDir, FileAuditKey)
	data, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(data)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: not a signing key", path)
		}
		return signer, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, FileAuditPub), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// ingestAudit records a batch shipped by a proxy, once: records at or
// below the highest sequence number already taken from that sender are
// skipped (a sender retries until it hears the ack), and each record names
// its sender, authenticated by its SVID, in reported_by.
func (h *Handler) ingestAudit(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	if h.AuditLog == nil {
		h.fail(w, r, &httpError{status: http.StatusServiceUnavailable, code: "no_audit_log", msg: "this server keeps no audit log"})
		return
	}
	var batch AuditBatch
	if err := decodeLimit(w, r, &batch, maxAuditBodyBytes); err != nil {
		h.fail(w, r, err)
		return
	}
	if len(batch.Records) > maxAuditBatch {
		h.fail(w, r, badRequest("too_many", fmt.Sprintf("at most %d records per batch", maxAuditBatch)))
		return
	}
	key := "audit.shipped." + caller.String()
	var acked uint64
	switch v, err := h.Store.GetMeta(r.Context(), key); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		h.fail(w, r, err)
		return
	default:
		if acked, err = strconv.ParseUint(v, 10, 64); err != nil {
			h.fail(w, r, fmt.Errorf("stored audit cursor of %s: %w", caller, err))
			return
		}
	}
	for i, rec := range batch.Records {
		if i > 0 && rec.Seq <= batch.Records[i-1].Seq {
			h.fail(w, r, badRequest("bad_order", "records must be in increasing seq order"))
			return
		}
	}
	start := acked
	var appendErr error
	for _, rec := range batch.Records {
		if rec.Seq <= acked {
			continue
		}
		e := rec.Event
		fields := make(map[string]string, len(e.Fields)+2)
		for k, v := range e.Fields {
			fields[k] = v
		}
		fields["reported_by"] = caller.String()
		fields["reported_seq"] = strconv.FormatUint(rec.Seq, 10)
		e.Fields = fields
		if _, appendErr = h.AuditLog.Append(r.Context(), e); appendErr != nil {
			break
		}
		acked = rec.Seq
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
