package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
)

func instancesCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "instances [SERVICE] [-o json]",
		Short: "List the registered instances of every service, or of one: address, age, health, labels",
		Long: `Instances lists the live set the server hands the proxies: each instance a
sidecar registered with its SVID, with its address, how long ago it started,
its health (ok: renewed within its TTL; late: a renewal is overdue, and the
instance leaves the set when its TTL runs out), its labels and the serial of
the SVID that registered it. Static endpoints written in a Service are not
listed here ('ward get service' shows them).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "table" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			service := ""
			if len(args) == 1 {
				service = args[0]
			}
			list, err := c.Instances(cmd.Context(), service)
			if err != nil {
				return err
			}
			if output == "json" {
				if list == nil {
					list = []control.Instance{}
				}
				return printJSON(g.out, list)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tID\tADDRESS\tAGE\tHEALTH\tLABELS\tSERIAL")
			for _, in := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Service, in.ID, in.Address, age(now.Sub(in.Started)),
					instanceHealth(in, now), dash(labelsText(in.Labels)), in.Serial)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "table (the default) or json")
	return cmd
}

// instanceHealth is ok while the instance was renewed within a third of
// its TTL plus a second (the renewal period and its write), late after.
func instanceHealth(in control.Instance, now time.Time) string {
	ttl, err := time.ParseDuration(in.TTL)
	if err != nil || ttl <= 0 {
		ttl = control.DefaultInstanceTTL
	}
	if now.Sub(in.Renewed) <= ttl/3+2*time.Second {
		return "ok"
	}
	return fmt.Sprintf("late (%s since a renewal)", age(now.Sub(in.Renewed)))
}

func labelsText(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// age writes d to the second, or to the minute past an hour.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d >= time.Hour {
		return d.Truncate(time.Minute).String()
	}
	return d.Truncate(time.Second).String()
}
