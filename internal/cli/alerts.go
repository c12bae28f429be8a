package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

func alertsCmd(g *globals) *cobra.Command {
	var dir, since, rule, caller string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "alerts [--since T] [--rule NAME] [--caller ADDR|ID] [--limit N] [--json]",
		Short: "List recent detections: which rule fired on whom, the counts and the evidence",
		Long: `Alerts reads the detect.alert records from the server's audit log (on the
server's machine, like "ward audit query"): each time a DetectionRule fired,
with the caller, the count in the window, sample request ids and what was
done (ban, alert, dry_run, or allowed for an allow-listed caller).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.auditDir(dir)
			if err != nil {
				return err
			}
			f := audit.Filter{Type: control.EventDetection, Reason: rule}
			if f.Since, err = parseWhen(since, time.Now()); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			var rows []audit.Event
			_, err = audit.Query(cmd.Context(), d, f, func(r audit.Record) error {
				if caller == "" || r.Event.Subject == caller {
					rows = append(rows, r.Event)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if limit > 0 && len(rows) > limit {
				rows = rows[len(rows)-limit:] // the most recent
			}
			if asJSON {
				enc := json.NewEncoder(g.out)
				for _, e := range rows {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tRULE\tSIGNAL\tCALLER\tTARGET\tCOUNT\tWINDOW\tACTION\tBAN\tSAMPLES")
			for _, e := range rows {
				fl := func(k string) string { return dash(e.Fields[k]) }
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Reason, fl("signal"),
					e.Subject, fl("target"), fl("count"), fl("window"), fl("action"), fl("ban"), fl("samples"))
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "audit log directory (default <data-dir>/audit)")
	fl.StringVar(&since, "since", "24h", "only detections at or after this time (RFC 3339, a date or an age)")
	fl.StringVar(&rule, "rule", "", "only this DetectionRule")
	fl.StringVar(&caller, "caller", "", "only this caller (address or SPIFFE ID)")
	fl.IntVar(&limit, "limit", 0, "the most recent N (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print JSON lines")
	return cmd
}
