package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wardsec/ward/internal/testport"
)

func TestECSFieldNames(t *testing.T) {
	e := testEvent(1)
	e.User, e.TraceID, e.Result = "alice", "4bf92f3577b34da6a3ce929d0e0e4736", "403"
	var buf bytes.Buffer
	if err := NewECSWriter(&buf).Send(Record{Seq: 7, Event: e}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	get := func(path string) any {
		var v any = doc
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	want := map[string]any{
		"@timestamp":      "2026-01-02T03:04:06Z",
		"event.action":    "gateway.request",
		"event.outcome":   "failure",
		"event.reason":    "no_rule",
		"event.sequence":  float64(7),
		"source.ip":       "192.0.2.7",
		"source.port":     float64(40000),
		"user.name":       "alice",
		"service.name":    "svc-1",
		"trace.id":        "4bf92f3577b34da6a3ce929d0e0e4736",
		"http.request.id": "req-1",
		"ward.actor":      "spiffe://example.org/svc/caller-1",
		"ward.decision":   "deny",
		"ward.result":     "403",
	}
	for path, v := range want {
		if got := get(path); got != v {
			t.Errorf("%s = %v, want %v", path, got, v)
		}
	}
}

func TestFormatRFC5424(t *testing.T) {
	e := testEvent(1)
	e.Reason = `quote" back\ bracket]`
	msg := string(FormatRFC5424(Record{Seq: 9, Event: e}, "host a", "ward"))
	prefix := fmt.Sprintf("<108>1 2026-01-02T03:04:06.000000Z host_a ward %d gateway.request [ward@32473 seq=\"9\" decision=\"deny\" reason=\"quote\\\" back\\\\ bracket\\]\"", os.Getpid())
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("got  %s\nwant %s...", msg, prefix)
	}
	if i := strings.Index(msg, "] {"); i < 0 || !json.Valid([]byte(msg[i+2:])) {
		t.Fatalf("MSG is not the ECS JSON document: %s", msg)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := testport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startRsyslog runs a real rsyslogd with its own configuration: imtcp on
// a free loopback port, everything to out via omfile.
func startRsyslog(t *testing.T, out string) string {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatal("rsyslogd not found: install Debian's rsyslog package (apt-get install rsyslog); scripts/test does")
	}
	work := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(work, "rsyslog.conf")
	cfg := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="test" type="string" string="%%pri%% %%hostname%% %%app-name%% %%msgid%% %%structured-data%% %%msg%%\n")
*.* action(type="omfile" file=%q template="test")
`, work, port, out)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(work, "rsyslogd.pid"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("rsyslogd exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd does not listen on %s: %s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSyslogToRealRsyslog ships records from a log to a real rsyslogd
// over TCP with octet-counting framing and checks each arrives whole.
func TestSyslogToRealRsyslog(t *testing.T) {
	out := filepath.Join(t.TempDir(), "received.log")
	addr := startRsyslog(t, out)
	dir := smallLog(t, newKey(t), 50, false)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := NewSyslog(SyslogConfig{Addr: addr, Hostname: "gw1"})
	ctx := context.Background()
	last, err := Ship(ctx, dir, 20, func(r Record) error { return s.Send(ctx, r) }, m)
	if err != nil || last != 50 {
		t.Fatalf("ship: cursor %d, %v", last, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, m.shipped); got != 30 {
		t.Fatalf("shipped metric %v, want 30", got)
	}
	var lines []string
	waitFor(t, "rsyslog to write 30 messages", func() bool {
		data, _ := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(data)), "\n")
		return len(lines) >= 30
	})
	if len(lines) != 30 {
		t.Fatalf("rsyslog wrote %d lines, want 30", len(lines))
	}
	for i, l := range lines {
		seq := 21 + i
		e := testEvent(seq - 1)
		pri := "110"
		if e.Decision == "deny" {
			pri = "108"
		}
		want := fmt.Sprintf(`%s gw1 ward gateway.request [ward@32473 seq="%d" decision="%s"`, pri, seq, e.Decision)
		if !strings.HasPrefix(l, want) {
			t.Fatalf("line %d: %q\nwant prefix %q", i, l, want)
		}
		j := strings.Index(l, "] {")
		var doc map[string]any
		if j < 0 || json.Unmarshal([]byte(l[j+2:]), &doc) != nil {
			t.Fatalf("line %d: message not whole: %q", i, l)
		}
		if doc["event"].(map[string]any)["sequence"] != float64(seq) {
			t.Fatalf("line %d: %v", i, doc["event"])
		}
	}
}

// TestSyslogOverTLS ships over TLS and reads the octet-counted frames.
func TestSyslogOverTLS(t *testing.T) {
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := make(chan []string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			frames <- nil
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var got []string
		for {
			n, err := br.ReadString(' ')
			if err != nil {
				break
			}
			size, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				break
			}
			msg := make([]byte, size)
			if _, err := io.ReadFull(br, msg); err != nil {
				break
			}
			got = append(got, string(msg))
		}
		frames <- got
	}()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	s := NewSyslog(SyslogConfig{Addr: l.Addr().String(), TLS: &tls.Config{RootCAs: pool}})
	ctx := context.Background()
	for i := range 5 {
		if err := s.Send(ctx, Record{Seq: uint64(i + 1), Event: testEvent(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-frames
	if len(got) != 5 {
		t.Fatalf("received %d frames", len(got))
	}
	for i, m := range got {
		if !strings.HasPrefix(m, "<") || !strings.Contains(m, fmt.Sprintf(`seq="%d"`, i+1)) {
			t.Fatalf("frame %d: %q", i, m)
		}
	}
}

// TestMetricsCountWritesAndFailures checks the written and failure
// counters move with what happened.
func TestMetricsCountWritesAndFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ff := &faultFS{}
	w, err := Open(t.TempDir(), Options{Metrics: m, NoCompress: true, Retention: -1, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		if _, err := w.Append(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ff.full.Store(true)
	if _, err := w.Append(context.Background(), testEvent(5)); err == nil {
		t.Fatal("append on full disk succeeded")
	}
	ff.full.Store(false)
	if got := metricValue(t, m.written); got != 5 {
		t.Fatalf("written %v, want 5", got)
	}
	if got := metricValue(t, m.failures.WithLabelValues("disk")); got != 1 {
		t.Fatalf("disk failures %v, want 1", got)
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// TestShipperCursor: a Shipper delivers in order, keeps its cursor across
// restarts, and after a failed pass resends from the last delivered seq.
func TestShipperCursor(t *testing.T) {
	dir := smallLog(t, newKey(t), 30, false)
	cursor := filepath.Join(t.TempDir(), "cursor")
	var got []uint64
	failAt := uint64(12)
	sh := &Shipper{Dir: dir, Cursor: cursor, Once: true, Metrics: NewMetrics(nil),
		Send: func(_ context.Context, r Record) error {
			if r.Seq == failAt {
				return fmt.Errorf("receiver down")
			}
			got = append(got, r.Seq)
			return nil
		}}
	if err := sh.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "receiver down") {
		t.Fatalf("first pass: %v", err)
	}
	if c, _ := ReadCursor(cursor); c != 11 {
		t.Fatalf("cursor after failure %d, want 11", c)
	}
	failAt = 0
	if err := sh.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, _ := ReadCursor(cursor); c != 30 || len(got) != 30 || got[11] != 12 || got[29] != 30 {
		t.Fatalf("cursor %d, delivered %v", c, got)
	}
	if lag := metricValue(t, sh.Metrics.lag); lag <= 0 {
		t.Fatalf("shipping lag %v", lag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	sh.Once, sh.Interval = false, 10*time.Millisecond
	if err := sh.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run until ctx ends: %v", err)
	}
	if len(got) != 30 {
		t.Fatalf("records sent twice: %d", len(got))
	}
}
