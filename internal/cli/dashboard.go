package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func dashboardCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "The web dashboard served by ward server",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "login",
		Short: "Print a one-time link that logs a browser in to the dashboard as you",
		Long: `Asks the server, with your operator credential, for a login link. The link
works once, within five minutes, on the server that printed it; the browser
then holds a session (8 hours) with your role: the dashboard lets you see and
do what the admin API lets you.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			link, err := c.DashboardLogin(cmd.Context())
			if err != nil {
				return g.refused(err)
			}
			fmt.Fprintln(g.out, link.URL)
			fmt.Fprintf(g.errw, "open it in a browser before %s (once); the browser must trust the server's CA (the bundle)\n",
				link.Expires.Local().Format(time.Kitchen))
			return nil
		},
	})
	return cmd
}
