package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// ECS returns r as an Elastic Common Schema document: nested objects whose
// dotted paths are the ECS field names (@timestamp, event.action,
// event.outcome, event.reason, source.ip, user.name, service.name,
// trace.id, http.request.id, ...), so that Elasticsearch or OpenSearch
// ingest it unchanged. Fields without an ECS name go under ward.*.
func ECS(r Record) map[string]any {
	e := r.Event
	doc := map[string]any{
		"@timestamp": e.Time.UTC().Format(time.RFC3339Nano),
		"ecs":        map[string]any{"version": "8.11.0"},
	}
	event := map[string]any{"kind": "event", "action": e.Type, "sequence": r.Seq, "outcome": outcome(e.Decision),
		"module": "ward", "dataset": "ward.audit"}
	if e.Reason != "" {
		event["reason"] = e.Reason
	}
	doc["event"] = event
	if e.Source != "" {
		src := map[string]any{"address": e.Source}
		if ap, err := netip.ParseAddrPort(e.Source); err == nil {
			src["ip"] = ap.Addr().Unmap().String()
			src["port"] = ap.Port()
		} else if a, err := netip.ParseAddr(e.Source); err == nil {
			src["ip"] = a.String()
		}
		doc["source"] = src
	}
	if e.User != "" {
		doc["user"] = map[string]any{"name": e.User}
	}
	if e.Service != "" {
		doc["service"] = map[string]any{"name": e.Service}
	}
	if e.TraceID != "" {
		doc["trace"] = map[string]any{"id": e.TraceID}
	}
	if e.RequestID != "" {
		doc["http"] = map[string]any{"request": map[string]any{"id": e.RequestID}}
	}
	ward := map[string]any{"seq": r.Seq}
	for k, v := range map[string]string{"actor": e.Actor, "subject": e.Subject, "decision": e.Decision, "app": e.App, "result": e.Result} {
		if v != "" {
			ward[k] = v
		}
	}
	if f := e.FieldMap(); len(f) > 0 {
		ward["fields"] = f
	}
	doc["ward"] = ward
	return doc
}

func outcome(decision string) string {
	switch decision {
	case "allow":
		return "success"
	case "deny":
		return "failure"
	}
	return "unknown"
}

// ECSWriter writes records as ECS JSON lines.
type ECSWriter struct{ enc *json.Encoder }

// NewECSWriter writes to w.
func NewECSWriter(w io.Writer) *ECSWriter { return &ECSWriter{enc: json.NewEncoder(w)} }

// Send writes one record as a line.
func (x *ECSWriter) Send(r Record) error { return x.enc.Encode(ECS(r)) }

// Syslog facility and severities used for audit records.
const (
	syslogFacility = 13 // log audit
	sevWarning     = 4
	sevInfo        = 6
)

// FormatRFC5424 renders r as an RFC 5424 syslog message: facility "log
// audit", severity warning for a deny and info otherwise, MSGID the event
// type, structured data [ward@32473 ...] with the key fields, and the ECS
// JSON document as MSG.
func FormatRFC5424(r Record, hostname, app string) []byte {
	e := r.Event
	sev := sevInfo
	if e.Decision == "deny" {
		sev = sevWarning
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s %s %d %s ", syslogFacility*8+sev,
		e.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		headerField(hostname, 255), headerField(app, 48), os.Getpid(), headerField(e.Type, 32))
	b.WriteString("[ward@32473 seq=\"")
	b.WriteString(strconv.FormatUint(r.Seq, 10))
	b.WriteByte('"')
	for _, kv := range [][2]string{{"decision", e.Decision}, {"reason", e.Reason}, {"actor", e.Actor},
		{"subject", e.Subject}, {"service", e.Service}, {"user", e.User}, {"app", e.App},
		{"source", e.Source}, {"request_id", e.RequestID}, {"trace_id", e.TraceID}, {"result", e.Result}} {
		if kv[1] == "" {
			continue
		}
		b.WriteString(" " + kv[0] + "=\"")
		sdEscape(&b, kv[1])
		b.WriteByte('"')
	}
	b.WriteString("] ")
	doc, _ := json.Marshal(ECS(r))
	b.Write(doc)
	return []byte(b.String())
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func headerField(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			out = append(out, c)
		} else {
			out = append(out, '_')
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

func sdEscape(b *strings.Builder, s string) {
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r == '"' || r == '\\' || r == ']' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
}

// SyslogConfig says where to ship records.
type SyslogConfig struct {
	Addr     string      // host:port of a TCP syslog receiver
	TLS      *tls.Config // not nil: syslog over TLS (RFC 5425)
	Hostname string      // default os.Hostname
	AppName  string      // default "ward"
	Timeout  time.Duration
}

// Syslog ships records to a syslog receiver over TCP or TLS with
// octet-counting framing (RFC 6587 3.4.1, RFC 5425). It reconnects on the
// next Send after a failure. It is not safe for concurrent use.
type Syslog struct {
	cfg  SyslogConfig
	conn net.Conn
	bw   *bufio.Writer
}

// NewSyslog returns an exporter; it connects on first use.
func NewSyslog(cfg SyslogConfig) *Syslog {
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.AppName == "" {
		cfg.AppName = "ward"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Syslog{cfg: cfg}
}

func (s *Syslog) connect(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	var c net.Conn
	var err error
	if s.cfg.TLS != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: s.cfg.TLS}).DialContext(ctx, "tcp", s.cfg.Addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", s.cfg.Addr)
	}
	if err != nil {
		return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
	}
	s.conn, s.bw = c, bufio.NewWriterSize(c, 64<<10)
	return nil
}

// Send buffers one record; Flush sends what is buffered.
func (s *Syslog) Send(ctx context.Context, r Record) error {
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	msg := FormatRFC5424(r, s.cfg.Hostname, s.cfg.AppName)
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	s.bw.WriteString(strconv.Itoa(len(msg)))
	s.bw.WriteByte(' ')
	if _, err := s.bw.Write(msg); err != nil {
		s.reset()
		return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Flush writes buffered records to the connection.
func (s *Syslog) Flush() error {
	if s.conn == nil {
		return nil
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if err := s.bw.Flush(); err != nil {
		s.reset()
		return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
	}
	return nil
}

func (s *Syslog) reset() {
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn, s.bw = nil, nil
}

// Close flushes and closes the connection.
func (s *Syslog) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.bw.Flush()
	if cerr := s.conn.Close(); err == nil {
		err = cerr
	}
	s.conn, s.bw = nil, nil
	return err
}

// Ship sends every record in dir with a seq above after to send, in
// order, and returns the seq of the last one sent: the caller's cursor
// for the next call. It stops at the first error (the cursor then says
// what was delivered; delivery is at least once). m, when not nil,
// counts shipped records and the shipping lag.
func Ship(ctx context.Context, dir string, after uint64, send func(Record) error, m *Metrics) (uint64, error) {
	last := after
	_, err := Query(ctx, dir, Filter{AfterSeq: after}, func(r Record) error {
		if err := send(r); err != nil {
			m.failed("export", 1)
			return err
		}
		last = r.Seq
		m.shippedRecord(r.Event.Time, time.Now())
		return nil
	})
	if errors.Is(err, ErrStop) {
		err = nil
	}
	return last, err
}

// Shipper keeps an exporter fed: every Interval it ships the records
// written since its cursor, and keeps the cursor in a file so that a
// restart continues where delivery stopped (at least once). It is a
// long-running subsystem: Run returns ctx.Err() when ctx ends.
type Shipper struct {
	Dir    string
	Cursor string // file holding the last delivered seq ("" keeps it in memory)
	After  uint64 // start after this seq when there is no cursor file yet
	Send   func(context.Context, Record) error
	// Flush, when set, runs after each pass; records count as delivered
	// only once it returns nil (Syslog.Flush).
	Flush    func() error
	Interval time.Duration // default 1s
	Once     bool          // one pass, then return (nil or its error)
	Metrics  *Metrics
	Log      *slog.Logger
}

// Run ships until ctx ends (or after one pass with Once).
func (s *Shipper) Run(ctx context.Context) error {
	after := s.After
	if s.Cursor != "" {
		c, err := ReadCursor(s.Cursor)
		if err != nil {
			return fmt.Errorf("audit cursor %s: %w", s.Cursor, err)
		}
		if c > 0 {
			after = c
		}
	}
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		last, err := Ship(ctx, s.Dir, after, func(r Record) error { return s.Send(ctx, r) }, s.Metrics)
		if s.Flush != nil {
			if ferr := s.Flush(); ferr != nil {
				if err == nil {
					err = ferr
				}
				last = after // nothing past the old cursor is known delivered
			}
		}
		if last > after {
			if s.Cursor != "" {
				if werr := writeFileAtomic(s.Cursor, []byte(strconv.FormatUint(last, 10)+"\n")); werr != nil {
					return fmt.Errorf("audit cursor: %w", werr)
				}
			}
			log.Debug("audit records shipped", "from", after+1, "to", last)
			after = last
		}
		if s.Once {
			return err
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("audit export failed; retrying", "after", after, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// ReadCursor returns the seq a Shipper's cursor file records (0 when none).
func ReadCursor(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}
