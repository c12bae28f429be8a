package cli

import (
	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/demo"
)

func demoCmd(g *globals) *cobra.Command {
	var dir string
	var exit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run Ward on loopback: server, gateway on https://127.0.0.1:8443, two services with sidecars, and a tour",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &demo.Demo{DataDir: dir, Out: g.out, Exit: exit, Ward: Run}
			if g.logLevel == "debug" {
				d.Log = g.logger()
			}
			return d.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "keep the demo's files here (default: a temporary directory)")
	cmd.Flags().BoolVar(&exit, "exit", false, "stop after the tour")
	return cmd
}
