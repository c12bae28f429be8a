package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

func identityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "Obtain and inspect workload identities (X.509-SVIDs)"}
	var token, out, td, id string
	enroll := &cobra.Command{
		Use:   "enroll --server URL --bundle FILE --token TOKEN --out DIR",
		Short: "Enroll with a join token: key generated here, CSR sent, SVID written to DIR",
		Long: `Enroll generates an ECDSA P-256 key locally (it never leaves this machine),
sends a certificate request with the one-time join token, checks the answer
against the trust bundle and writes DIR/svid.pem, DIR/key.pem (mode 0600) and
DIR/bundle.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.server == "" || g.bundle == "" || token == "" || out == "" {
				return fmt.Errorf("--server, --bundle, --token and --out are required")
			}
			bundle, err := loadBundle(g.bundle, td)
			if err != nil {
				return err
			}
			c, err := control.NewClient(g.server, bundle, nil)
			if err != nil {
				return err
			}
			var want spiffeid.ID
			if id != "" {
				if want, err = spiffeid.FromString(id); err != nil {
					return fmt.Errorf("--id: %w", err)
				}
			}
			src, err := identity.NewSource(identity.Config{Authority: c, TrustDomain: bundle.TrustDomain, Dir: out, Logger: g.logger()})
			if err != nil {
				return err
			}
			if err := src.SetBundle(bundle); err != nil {
				return err
			}
			if err := src.Enroll(cmd.Context(), want, token); err != nil {
				return err
			}
			svid := src.Current()
			fmt.Fprintf(g.out, "%s\nserial %s, expires %s, written to %s\n", svid.ID, svid.Serial(), svid.Leaf().NotAfter.UTC().Format(time.RFC3339), out)
			return nil
		},
	}
	f := enroll.Flags()
	f.StringVar(&token, "token", "", "one-time join token from 'ward token create'")
	f.StringVar(&out, "out", "", "directory for svid.pem, key.pem and bundle.pem")
	f.StringVar(&td, "trust-domain", "", "trust domain (default: read from the bundle)")
	f.StringVar(&id, "id", "", "SPIFFE ID to request (default: the one the token is bound to)")
	cmd.AddCommand(enroll)
	return cmd
}
