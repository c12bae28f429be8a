package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/audit"
)

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify, query and export the tamper-evident audit log"}
	cmd.AddCommand(auditVerifyCmd(g), auditQueryCmd(g), auditExportCmd(g))
	return cmd
}

// auditDir is --dir, or <data-dir>/audit.
func (g *globals) auditDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if g.dataDir != "" {
		return filepath.Join(g.dataDir, "audit"), nil
	}
	return "", errors.New("say where the audit log is: --dir DIR (or --data-dir DIR for DIR/audit)")
}

func auditVerifyCmd(g *globals) *cobra.Command {
	var dir, keyPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --dir DIR [--key PUBKEY.pem]",
		Short: "Check the audit log's hash chain, segments and checkpoint signatures",
		Long: `Verify checks every record's hash, the chain from record to record and
segment to segment, record sequence numbers, segment seals and retention
cuts, and with --key every checkpoint signature. It reads compressed
segments too and never changes the log.

A torn tail (the last record only partly written when a process crashed;
it was never acknowledged) is reported as such, not as tampering; the
writer cuts it off the next time it opens the log. Any other finding is
evidence of tampering or damage. The exit status is non-zero in both cases.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.auditDir(dir)
			if err != nil {
				return err
			}
			var pub any
			if keyPath != "" {
				data, err := os.ReadFile(keyPath)
				if err != nil {
					return err
				}
				if pub, err = audit.ParsePublicKeyPEM(data); err != nil {
					return fmt.Errorf("%s: %w", keyPath, err)
				}
			}
			start := time.Now()
			r, err := audit.Verify(d, pub)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(g.out, r); err != nil {
					return err
				}
			} else {
				for _, p := range r.Problems {
					fmt.Fprintln(g.out, "TAMPERED", p.String())
				}
				if r.Truncated {
					fmt.Fprintln(g.out, "(more problems not shown)")
				}
				if t := r.TornTail; t != nil {
					fmt.Fprintf(g.out, "TORN TAIL segment %d offset %d: %d bytes of a record cut short by a crash; it was never acknowledged and is not tampering; the log writer removes it when it next opens the log\n", t.Segment, t.Offset, t.Bytes)
				}
				status := "OK"
				if !r.OK() {
					status = "FAILED"
				}
				fmt.Fprintf(g.out, "%s %s (%s)\n", status, r.Summary(), time.Since(start).Round(time.Millisecond))
			}
			switch {
			case r.Tampered():
				return fmt.Errorf("audit log %s failed verification: %d problem(s), tampering or damage", d, len(r.Problems))
			case r.TornTail != nil:
				return fmt.Errorf("audit log %s has a torn tail from a crash (no tampering found)", d)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "audit log directory (default <data-dir>/audit)")
	cmd.Flags().StringVar(&keyPath, "key", "", "PEM public key or certificate that signs checkpoints (without it signatures are not checked)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// parseWhen reads a time flag: RFC 3339, a date (UTC), or a duration
// back from now ("90m", "36h", "30d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01) or an age (36h, 30d)", s)
}

func auditQueryCmd(g *globals) *cobra.Command {
	var dir, since, until string
	var f audit.Filter
	var limit int
	var asJSON, asECS bool
	cmd := &cobra.Command{
		Use:   "query --dir DIR [--since T] [--until T] [--principal ID] [--service S] [--decision allow|deny] [--reason CODE]",
		Short: "Find audit records by time, principal, service, decision and reason",
		Long: `Query prints the records that match every filter given, oldest first.
Sealed segments carry an index (time range and a Bloom filter of principals
and services), so segments that cannot match are not read. --principal
matches the caller's SPIFFE ID, user or application. Times are RFC 3339,
a date, or an age back from now (36h, 30d). Query does not check hashes:
run verify for proof.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.auditDir(dir)
			if err != nil {
				return err
			}
			now := time.Now()
			if f.Since, err = parseWhen(since, now); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if f.Until, err = parseWhen(until, now); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			if f.Decision != "" && f.Decision != "allow" && f.Decision != "deny" {
				return fmt.Errorf("--decision %q: use allow or deny", f.Decision)
			}
			start := time.Now()
			var emit func(audit.Record) error
			var flush func() error
			switch {
			case asECS:
				ecs := audit.NewECSWriter(g.out)
				emit, flush = ecs.Send, func() error { return nil }
			case asJSON:
				enc := json.NewEncoder(g.out)
				emit, flush = func(r audit.Record) error { return enc.Encode(r) }, func() error { return nil }
			default:
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tSEQ\tTYPE\tDECISION\tREASON\tACTOR\tUSER\tSERVICE\tSOURCE\tREQUEST")
				emit = func(r audit.Record) error {
					e := r.Event
					_, err := fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339),
						r.Seq, e.Type, dash(e.Decision), dash(e.Reason), dash(e.Actor), dash(e.User), dash(e.Service), dash(e.Source), dash(e.RequestID))
					return err
				}
				flush = tw.Flush
			}
			n := 0
			st, err := audit.Query(cmd.Context(), d, f, func(r audit.Record) error {
				if limit > 0 && n >= limit {
					return audit.ErrStop
				}
				n++
				return emit(r)
			})
			if ferr := flush(); err == nil {
				err = ferr
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errw, "%d records; read %d of %d segments (%d skipped by index), %d records scanned, %s\n",
				n, st.Read, st.Segments, st.Skipped, st.Scanned, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "audit log directory (default <data-dir>/audit)")
	fl.StringVar(&since, "since", "", "only events at or after this time")
	fl.StringVar(&until, "until", "", "only events before this time")
	fl.StringVar(&f.Principal, "principal", "", "caller: SPIFFE ID, user or application")
	fl.StringVar(&f.Service, "service", "", "service name")
	fl.StringVar(&f.Decision, "decision", "", "allow or deny")
	fl.StringVar(&f.Reason, "reason", "", "reason code")
	fl.StringVar(&f.Type, "type", "", "event type (gateway.request, ca.issue, ...)")
	fl.IntVar(&limit, "limit", 0, "print at most this many records (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print JSON lines")
	fl.BoolVar(&asECS, "ecs", false, "print JSON lines with Elastic Common Schema field names")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditExportCmd(g *globals) *cobra.Command {
	var dir, syslogAddr, caPath, serverName, cursorPath string
	var useTLS, follow bool
	var after uint64
	cmd := &cobra.Command{
		Use:   "export --dir DIR (--syslog HOST:PORT [--tls] | --ecs) [--cursor FILE] [--follow]",
		Short: "Ship audit records to syslog (RFC 5424 over TCP or TLS) or as ECS JSON lines",
		Long: `Export sends the records after a cursor, in order: to a syslog receiver
as RFC 5424 messages with octet-counting framing over TCP (--tls for
RFC 5425), or to standard output as JSON lines with Elastic Common Schema
field names (--ecs). With --cursor FILE, the last seq delivered is kept in
FILE and the next run continues from there (delivery is at least once).
--follow keeps shipping new records as they are written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.auditDir(dir)
			if err != nil {
				return err
			}
			if (syslogAddr == "") == !useECS(cmd) {
				return errors.New("say where to: --syslog HOST:PORT or --ecs")
			}
			sh := &audit.Shipper{Dir: d, Cursor: cursorPath, After: after, Once: !follow, Log: g.logger()}
			if syslogAddr != "" {
				cfg := audit.SyslogConfig{Addr: syslogAddr}
				if useTLS {
					cfg.TLS = &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
					if caPath != "" {
						pem, err := os.ReadFile(caPath)
						if err != nil {
							return err
						}
						cfg.TLS.RootCAs = x509.NewCertPool()
						if !cfg.TLS.RootCAs.AppendCertsFromPEM(pem) {
							return fmt.Errorf("%s: no certificate found", caPath)
						}
					}
				}
				s := audit.NewSyslog(cfg)
				defer s.Close()
				sh.Send, sh.Flush = s.Send, s.Flush
			} else {
				ecs := audit.NewECSWriter(g.out)
				sh.Send = func(_ context.Context, r audit.Record) error { return ecs.Send(r) }
			}
			err = sh.Run(cmd.Context())
			if follow && errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "audit log directory (default <data-dir>/audit)")
	fl.StringVar(&syslogAddr, "syslog", "", "syslog receiver HOST:PORT (TCP, octet-counting framing)")
	fl.BoolVar(&useTLS, "tls", false, "syslog over TLS (RFC 5425)")
	fl.StringVar(&caPath, "ca", "", "PEM CA bundle that signs the syslog receiver's certificate (default: system roots)")
	fl.StringVar(&serverName, "server-name", "", "name expected in the syslog receiver's certificate (default: the host in --syslog)")
	fl.Bool("ecs", false, "write ECS JSON lines to standard output")
	fl.StringVar(&cursorPath, "cursor", "", "file that keeps the last delivered seq between runs")
	fl.Uint64Var(&after, "after", 0, "start after this seq (overridden by --cursor when the file exists)")
	fl.BoolVar(&follow, "follow", false, "keep shipping new records")
	return cmd
}

func useECS(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("ecs")
	return v
}
