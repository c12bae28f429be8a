// Package cli is Ward's command line: one cobra command per role and
// operator action. A role's command only parses its flags into the
// role's configuration (package role) and runs it; operator commands call
// the server.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ward:", err)
		return 1
	}
	return 0
}

// Run runs the command line with args in process, as the ward binary
// does, writing its output and errors to out (`ward demo` runs the tour's
// ward commands so).
func Run(ctx context.Context, out io.Writer, args ...string) error {
	root := NewRoot(out, out)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// globals are the flags every operator command shares.
type globals struct {
	server     string
	dataDir    string
	credential string
	bundle     string
	logLevel   string
	out, errw  io.Writer
}

// NewRoot builds the command tree writing to out and errw.
func NewRoot(out, errw io.Writer) *cobra.Command {
	g := &globals{out: out, errw: errw}
	root := &cobra.Command{
		Use:           "ward",
		Short:         "Ward: a zero-trust security plane for microservices",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errw)
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", os.Getenv("WARD_SERVER"), "Ward server API URL (env WARD_SERVER; default from <data-dir>/client.json)")
	pf.StringVar(&g.dataDir, "data-dir", os.Getenv("WARD_DATA_DIR"), "server data directory (env WARD_DATA_DIR)")
	pf.StringVar(&g.credential, "credential", os.Getenv("WARD_CREDENTIAL"), "operator credential PEM (default <data-dir>/operator/admin.pem)")
	pf.StringVar(&g.bundle, "bundle", "", "trust bundle PEM (default <data-dir>/bundle.pem)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
			return fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
		}
		return nil
	}
	root.AddCommand(demoCmd(g), serverCmd(g), gatewayCmd(g), sidecarCmd(g), tokenCmd(g), certCmd(g), caCmd(g), apikeyCmd(g), identityCmd(g), versionCmd(g))
	root.AddCommand(auditCmd(g), adminCmd(g), applyCmd(g), diffCmd(g), getCmd(g), deleteCmd(g), historyCmd(g), rollbackCmd(g))
	root.AddCommand(secretCmd(g), runCmd(g), banCmd(g), alertsCmd(g), policyCmd(g), dashboardCmd(g), instancesCmd(g))
	return root
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.errw, &slog.HandlerOptions{Level: lvl}))
}

// loadBundle reads a bundle file; the trust domain comes from the root's
// URI SAN (Ward writes spiffe://<td> there) unless td is given.
func loadBundle(path, td string) (*identity.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	certs, err := identity.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle %s: %w", path, err)
	}
	var domain spiffeid.TrustDomain
	if td != "" {
		if domain, err = spiffeid.TrustDomainFromString(td); err != nil {
			return nil, err
		}
	} else {
		for _, c := range certs {
			if len(c.URIs) == 1 {
				if domain, err = spiffeid.TrustDomainFromURI(c.URIs[0]); err == nil {
					break
				}
			}
		}
		if domain.IsZero() {
			return nil, fmt.Errorf("trust bundle %s does not name its trust domain; pass --trust-domain", path)
		}
	}
	return identity.NewBundle(domain, certs)
}

// client builds an operator client from the flags and data directory.
func (g *globals) client() (*control.Client, error) {
	server, bundlePath, credPath := g.server, g.bundle, g.credential
	if g.dataDir != "" {
		if server == "" {
			var info control.ClientInfo
			data, err := os.ReadFile(filepath.Join(g.dataDir, control.FileClient))
			if err != nil {
				return nil, fmt.Errorf("no --server given and %w (has the server started with this --data-dir?)", err)
			}
			if err := json.Unmarshal(data, &info); err != nil {
				return nil, fmt.Errorf("%s: %w", control.FileClient, err)
			}
			server = info.Server
		}
		if bundlePath == "" {
			bundlePath = filepath.Join(g.dataDir, control.FileBundle)
		}
		if credPath == "" {
			credPath = filepath.Join(g.dataDir, control.FileOperator)
		}
	}
	if server == "" || bundlePath == "" || credPath == "" {
		return nil, errors.New("say where the server is: --data-dir DIR (or WARD_DATA_DIR), or --server URL with --bundle FILE and --credential FILE")
	}
	bundle, err := loadBundle(bundlePath, "")
	if err != nil {
		return nil, err
	}
	cred, err := control.LoadCredential(credPath)
	if err != nil {
		return nil, err
	}
	return control.NewClient(server, bundle, cred)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Ward's version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(g.out, "ward", Version) },
	}
}

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "dev"
