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
		Short: "Run Ward's embedded demo on loopback: CA, enrollment, mTLS, revocation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &demo.Demo{DataDir: dir, Out: g.out, Exit: exit}
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
