package cli

import (
	"errors"
	"log/slog"

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
	cmd.AddCommand(demoInstanceCmd(g))
	return cmd
}

func demoInstanceCmd(g *globals) *cobra.Command {
	var dir, name string
	cmd := &cobra.Command{
		Use:   "instance SERVICE --dir D [--name NAME]",
		Short: "Start one more instance of a demo service (catalog or orders) beside a running demo, until Ctrl-C",
		Long: `Instance joins the demo running in --dir (the directory the tour calls $D)
with another instance of a service: its app, and a sidecar that registers
with the demo's server as ward sidecar does. Callers learn of it within a
second and spread their requests over every instance. Ctrl-C (or SIGTERM)
deregisters it, serves two more seconds while callers learn it is gone,
then stops: no request fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("--dir: the directory of the running demo ($D in its tour)")
			}
			if name == "" {
				name = args[0] + "-2"
			}
			var log *slog.Logger
			if g.logLevel == "debug" {
				log = g.logger()
			}
			return demo.Instance(cmd.Context(), dir, args[0], name, g.out, log)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the running demo's directory")
	cmd.Flags().StringVar(&name, "name", "", "the instance's name in its answers (default SERVICE-2)")
	return cmd
}
