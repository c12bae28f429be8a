package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func apikeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "Manage API keys: the credentials applications present at the gateway",
	}
	cmd.AddCommand(apikeyCreateCmd(g), apikeyListCmd(g), apikeyRevokeCmd(g))
	return cmd
}

func apikeyCreateCmd(g *globals) *cobra.Command {
	var app string
	var routes []string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --app NAME --routes ROUTE[,ROUTE...] [--ttl 720h]",
		Short: "Create an API key for an application (printed once)",
		Long: `Create an API key for an application, valid on the named routes ("*" for
every route). The key is printed once on standard output; Ward keeps only
its SHA-256 hash and cannot show it again. Without --ttl the key does not
expire: revoke it with 'ward apikey revoke PREFIX'.`,
		Example: `  ward apikey create --app billing --routes public-orders,public-invoices --ttl 720h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return fmt.Errorf("--ttl %s: give a positive duration such as 720h, or leave it out for a key that does not expire", ttl)
			}
			if len(routes) == 0 {
				return errors.New(`--routes needs at least one route name, or "*" for every route`)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.CreateAPIKey(cmd.Context(), app, routes, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, k.Key)
			fmt.Fprintf(g.errw, "api key for app %s: prefix %s, routes %s, expires %s\n",
				k.App, k.Prefix, strings.Join(k.Scopes, ","), expiresText(k.Expires))
			fmt.Fprintln(g.errw, "warning: this key cannot be shown again: store it now")
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&app, "app", "", "application the key identifies (lowercase letters, digits, '-')")
	f.StringSliceVar(&routes, "routes", nil, `route names the key is valid for, comma-separated, or "*" for every route`)
	f.DurationVar(&ttl, "ttl", 0, "how long the key stays valid, at most 8760h (default: no expiry)")
	_ = create.MarkFlagRequired("app")
	_ = create.MarkFlagRequired("routes")
	return create
}

func expiresText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func apikeyListCmd(g *globals) *cobra.Command {
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List API keys: prefix, application, routes, expiry, status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			keys, err := c.ListAPIKeys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.out, keys)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PREFIX\tAPP\tROUTES\tEXPIRES\tSTATUS")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Prefix, k.App, strings.Join(k.Scopes, ","), expiresText(k.Expires), k.Status)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return list
}

func apikeyRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke PREFIX",
		Short: "Revoke an API key; gateways refuse it as soon as they hear of it",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return errors.New("give the prefix of the key to revoke, as 'ward apikey list' shows it")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.RevokeAPIKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "revoked %s (app %s)\n", k.Prefix, k.App)
			return nil
		},
	}
}
