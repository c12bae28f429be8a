package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/resource"
	"github.com/wardsec/ward/internal/suggest"
)

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work on AccessPolicies from observed traffic",
	}
	cmd.AddCommand(policySuggestCmd(g))
	return cmd
}

func policySuggestCmd(g *globals) *cobra.Command {
	var since time.Duration
	var service string
	cmd := &cobra.Command{
		Use:   "suggest [--since 1h] [--service NAME]",
		Short: "Print the least-privilege AccessPolicies that admit the traffic observed in a window",
		Long: `Reads the flows of the window, keeps the calls that were let through (allowed,
or denied only by a dry-run policy) from mesh identities, and prints, as YAML on
standard output, one AccessPolicy per service called that admits exactly those
calls: callers, methods and path patterns (path templates with {id} become
prefixes such as /orders/*). Each suggestion replaces the service's current
policy (same name and mode; dry-run for a service that has none).

On standard error it then prints the replay of the observed traffic against
the suggestion (it must deny none of it) and the server's dry run of applying
it: the diff against the current policy. Nothing is changed; apply with
ward apply -f FILE, after checking the diff.`,
		Example: `  ward policy suggest --since 1h > suggested.yaml
  ward policy suggest --since 30m --service orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since <= 0 {
				return errors.New("--since must be a positive duration, such as 1h")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			win, err := c.Flows(ctx, control.FlowQuery{Since: since, Service: service})
			if err != nil {
				return g.refused(err)
			}
			cur, err := c.Resources(ctx, "", "")
			if err != nil {
				return g.refused(err)
			}
			current, err := resource.ParseSet("current", []byte(cur.Documents))
			if err != nil {
				return fmt.Errorf("the server's resources: %w", err)
			}
			return printSuggestion(ctx, g.out, g.errw, c, current, win, service)
		},
	}
	cmd.Flags().DurationVar(&since, "since", time.Hour, "the window: traffic observed since this long ago")
	cmd.Flags().StringVar(&service, "service", "", "suggest for this service only")
	return cmd
}

func printSuggestion(ctx context.Context, out, errw io.Writer, c *control.Client, current []resource.Object, win control.FlowWindow, service string) error {
	sugg := suggest.Suggest(win.Edges, current, service)
	if len(sugg) == 0 {
		return fmt.Errorf("no allowed traffic from mesh identities between %s and %s%s: nothing to suggest",
			win.From.Format(time.RFC3339), win.To.Format(time.RFC3339), forService(service))
	}
	var observed uint64
	var edges int
	for _, e := range win.Edges {
		if suggest.Observed(e) && (service == "" || e.Dest == service) {
			observed += e.Count
			edges++
		}
	}
	doc := resource.Marshal(sugg)
	fmt.Fprintf(out, "# ward policy suggest: %d requests on %d edges observed between %s and %s\n%s",
		observed, edges, win.From.UTC().Format(time.RFC3339), win.To.UTC().Format(time.RFC3339), doc)
	denied, err := suggest.Replay(c.TrustDomain(), current, sugg, win.Edges)
	if err != nil {
		return err
	}
	if len(denied) > 0 {
		for _, v := range denied {
			fmt.Fprintf(errw, "would deny observed: %s -> %s %s %s: %s\n", v.Edge.Source, v.Edge.Dest, v.Edge.Method, v.Edge.Path, v.Decision.Message)
		}
		return fmt.Errorf("the suggestion would deny %d observed edges", len(denied))
	}
	fmt.Fprintf(errw, "replay: the suggestion admits all %d observed edges\n", edges)
	resp, err := c.Apply(ctx, control.ApplyRequest{Files: []control.ResourceFile{{Name: "suggested.yaml", Data: string(doc)}}, DryRun: true})
	if err != nil {
		return fmt.Errorf("dry run of the suggestion: %w", err)
	}
	if len(resp.Changes) == 0 {
		fmt.Fprintf(errw, "dry run: the current policy (version %d) is already this suggestion\n", resp.Version)
		return nil
	}
	fmt.Fprintf(errw, "dry run against version %d:\n%s", resp.Previous, resp.Diff)
	return nil
}

func forService(s string) string {
	if s == "" {
		return ""
	}
	return " to " + s
}
