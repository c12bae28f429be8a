package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/control"
)

func adminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Manage operators and their roles (admin, developer, auditor)"}
	var role, out string
	var services []string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create NAME --role admin|developer|auditor [--services S1,S2] [--out FILE]",
		Short: "Create an operator and write their client credential (key generated here)",
		Long: `Create an operator spiffe://TD/user/NAME with a role, and write their
client credential (certificate and private key, mode 0600) to --out. The
key is generated here and never sent to the server. Roles:

  admin      everything
  developer  read everything; apply resources only for the services in
             --services (their Service, the AccessPolicies targeting it, the
             Routes to it), and only changes that move no request at the
             gateway to or from another team's Route; nothing on the CA,
             join tokens or API keys
  auditor    read everything, the audit trail included; change nothing

Creating an existing operator again replaces their role at once.`,
		Example: `  ward admin create dana --role developer --services orders --out dana.pem
  ward --credential dana.pem --server URL --bundle bundle.pem apply -f orders.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if role == "" {
				return errors.New("--role is required: admin, developer or auditor")
			}
			if out == "" {
				out = name + ".pem"
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("%s exists: choose another --out or remove it", out)
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			req := control.OperatorRequest{Name: name, Role: role, Services: services, CSR: csr}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			resp, err := c.CreateOperator(cmd.Context(), req)
			if err != nil {
				return err
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			data := append([]byte(resp.Chain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
			if err := atomicfile.Write(out, data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s  %s  %s\n", resp.Operator.ID, resp.Operator.Role, strings.Join(resp.Operator.Services, ","))
			fmt.Fprintf(g.errw, "credential written to %s (mode 0600), valid until %s\n", out, resp.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&role, "role", "", "admin, developer or auditor")
	f.StringSliceVar(&services, "services", nil, "for a developer: the services they own, comma-separated")
	f.StringVar(&out, "out", "", "where to write the credential (default ./NAME.pem)")
	f.DurationVar(&ttl, "ttl", 0, "how long the credential stays valid (default 720h, at most 2160h)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List operators and their roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ops, err := c.Operators(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OPERATOR\tROLE\tSERVICES\tCREATED BY")
			for _, o := range ops {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.ID, o.Role, strings.Join(o.Services, ","), o.CreatedBy)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(create, list)
	return cmd
}
