package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
)

func tokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage one-time join tokens"}
	var id string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --id spiffe://TD/svc/NAME [--ttl 10m]",
		Short: "Create a one-time join token bound to a SPIFFE ID (printed once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateToken(cmd.Context(), id, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, resp.Token)
			fmt.Fprintf(g.errw, "token for %s, single use, expires %s\n", resp.ID, resp.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&id, "id", "", "SPIFFE ID the token enrolls (spiffe://TD/svc/NAME or spiffe://TD/gateway/NAME)")
	create.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long the token stays valid (at most 168h)")
	_ = create.MarkFlagRequired("id")
	cmd.AddCommand(create)
	return cmd
}

func certCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Inventory and revocation of issued certificates"}
	var id string
	var all, asJSON bool
	list := &cobra.Command{
		Use:   "list [--id ID] [--all]",
		Short: "List issued certificates: identity, serial, not-after, status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			certs, err := c.ListCerts(cmd.Context(), id, all)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.out, certs)
			}
			printCerts(g, certs)
			return nil
		},
	}
	list.Flags().StringVar(&id, "id", "", "only this SPIFFE ID")
	list.Flags().BoolVar(&all, "all", false, "include expired certificates")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var revokeID, reason string
	revoke := &cobra.Command{
		Use:   "revoke SERIAL | --id SPIFFE_ID",
		Short: "Revoke a certificate, or every certificate of an identity",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := control.RevokeRequest{ID: revokeID, Reason: reason}
			if len(args) == 1 {
				req.Serial = args[0]
			}
			if (req.Serial == "") == (req.ID == "") {
				return fmt.Errorf("give a serial or --id, not both")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Revoke(cmd.Context(), req)
			if err != nil {
				return err
			}
			if len(resp.Revoked) == 0 {
				fmt.Fprintln(g.errw, "nothing to revoke: no valid certificate for", req.ID)
			}
			printCerts(g, resp.Revoked)
			return nil
		},
	}
	revoke.Flags().StringVar(&revokeID, "id", "", "revoke every valid certificate of this SPIFFE ID and void its unused tokens")
	revoke.Flags().StringVar(&reason, "reason", "", "keyCompromise, superseded, cessationOfOperation, affiliationChanged, caCompromise or unspecified")
	cmd.AddCommand(list, revoke)
	return cmd
}

func printCerts(g *globals, certs []control.CertInfo) {
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tSERIAL\tNOT AFTER\tSTATUS")
	for _, c := range certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Serial, c.NotAfter.UTC().Format(time.RFC3339), c.Status)
	}
	tw.Flush()
}

func caCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Show and rotate the certificate authority"}
	show := &cobra.Command{
		Use:   "show",
		Short: "List the root and intermediates with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			auths, err := c.Authorities(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATE\tNOT AFTER\tSUBJECT")
			for _, a := range auths {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Kind, a.State, a.NotAfter.UTC().Format(time.RFC3339), a.Subject)
			}
			return tw.Flush()
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Introduce a new intermediate; the old one stays trusted until retired",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			a, err := c.Rotate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, a.ID)
			fmt.Fprintln(g.errw, "new intermediate issues from now on; retire the old one with 'ward ca retire ID' once every SVID it issued has been renewed")
			return nil
		},
	}
	var force bool
	retire := &cobra.Command{
		Use:   "retire ID [--force]",
		Short: "Remove a retiring intermediate from the trust bundle",
		Long: `Retire removes an intermediate from the trust bundle: every certificate it
issued stops validating. It is refused while such certificates are still
valid, unless --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Retire(cmd.Context(), args[0], force)
		},
	}
	retire.Flags().BoolVar(&force, "force", false, "retire even though certificates it issued are still valid")
	cmd.AddCommand(show, rotate, retire)
	return cmd
}
