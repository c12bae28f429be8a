package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/role"
)

func serverCmd(g *globals) *cobra.Command {
	var cfg control.ServerConfig
	var rootCert, rootKey, interCert, interKey string
	var kekStdin bool
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: CA, enrollment, revocation (CRL, OCSP, feed)",
		Long: `Run the Ward server. On first start it initialises the data directory:
an ECDSA P-256 root and intermediate (or your own, imported from PEM), the
CA keys sealed with the key-encryption key, the trust bundle and a bootstrap
operator credential.

The key-encryption key comes from --kek-file, else $WARD_KEK (base64 of 32
bytes), else <data-dir>/kek, created on first start with mode 0600. Keep it
apart from the data directory in production.

With --kek-stdin the server starts sealed and reads the key from standard
input, one line (base64 of 32 bytes) at a time: until a line opens its keys
it serves only GET /v1/status ({"sealed":true}) and /healthz (503) on its
public listener, and its API listener is closed. A malformed or wrong key is
refused and the next line read; standard input ending while sealed is an
error. On first start the key given becomes the key-encryption key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.DataDir = g.dataDir
			cfg.Log = g.logger()
			if rootCert != "" {
				imp, err := readImport(rootCert, rootKey, interCert, interKey)
				if err != nil {
					return err
				}
				cfg.Import = imp
			} else if rootKey+interCert+interKey != "" {
				return fmt.Errorf("--import-root-cert is required to import a CA")
			}
			srv := &role.Server{Config: cfg}
			if kekStdin {
				// Only a Reader: os.Stdin's Close cannot end a read in progress.
				srv.KEK = struct{ io.Reader }{cmd.InOrStdin()}
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.TrustDomain, "trust-domain", "", "SPIFFE trust domain, e.g. example.org (required on first start)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8440", "address of the TLS API (enrollment, renewal, operators)")
	f.StringVar(&cfg.PublicListen, "public-listen", "127.0.0.1:8441", "address of the plain-HTTP listener (CRL, OCSP, bundle, /metrics)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "base URL written into certificates for CRL and OCSP (default http://<public-listen>)")
	f.StringVar(&cfg.StoreDSN, "store", "", "postgres://... to share state between servers (default SQLite in the data directory)")
	f.StringVar(&cfg.KEKFile, "kek-file", "", "file holding the key-encryption key (base64 of 32 bytes)")
	f.BoolVar(&kekStdin, "kek-stdin", false, "start sealed and read the key-encryption key from standard input (one line, base64 of 32 bytes)")
	cmd.MarkFlagsMutuallyExclusive("kek-file", "kek-stdin")
	f.StringVar(&cfg.AuditDir, "audit-dir", "", "the hash-chained audit log (default DATA_DIR/audit); checkpoints signed with DATA_DIR/audit-key.pem")
	f.DurationVar(&cfg.SVIDTTL, "svid-ttl", ca.DefaultSVIDTTL, "lifetime of issued SVIDs")
	f.DurationVar(&cfg.MaxSVIDTTL, "max-svid-ttl", ca.DefaultMaxSVIDTTL, "upper bound on SVID lifetimes")
	f.DurationVar(&cfg.InstanceTTL, "instance-ttl", control.DefaultInstanceTTL, "how long a registered instance lives without a renewal (sidecars renew at a third of it); a killed instance leaves the set within it")
	f.StringSliceVar(&cfg.SANs, "san", nil, "extra DNS name or IP for the server's certificate (repeatable)")
	f.StringSliceVar(&cfg.EdgeNames, "edge-names", control.DefaultEdgeNames, "names gateways may get edge certificates for, comma-separated: DNS names, *.domain (one label) or IPs")
	f.StringVar(&rootCert, "import-root-cert", "", "first start only: your root CA certificate (PEM)")
	f.StringVar(&rootKey, "import-root-key", "", "first start only: your root CA key (PEM); Ward then makes and rotates intermediates")
	f.StringVar(&interCert, "import-intermediate-cert", "", "first start only: your intermediate certificate (PEM), signed by the root")
	f.StringVar(&interKey, "import-intermediate-key", "", "first start only: your intermediate key (PEM)")
	return cmd
}

func readImport(rootCert, rootKey, interCert, interKey string) (*ca.Import, error) {
	imp := &ca.Import{}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{rootCert, &imp.RootCert}, {rootKey, &imp.RootKey}, {interCert, &imp.IntermediateCert}, {interKey, &imp.IntermediateKey}} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		*f.dst = data
	}
	return imp, nil
}
