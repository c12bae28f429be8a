package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/vault"
)

// errValueOnArgv is the hint given when a secret value seems to be on the
// command line.
const errValueOnArgv = "a secret value is never taken from the command line, where shell history and /proc/PID/cmdline keep it: pipe it on standard input (ward secret put PATH < file) or use --from-file FILE"

func secretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store, read and manage the vault's secrets",
		Long: `Secrets are stored in the server's vault, encrypted at rest, and released
only to the identities a SecretPolicy names as readers (default deny).
Paths look like orders/db/password: lowercase letters, digits, '-', '_'
and '.', segments separated by '/'; the first segment is the service that
owns the secret, whose developers may manage it.

Values never come from the command line: put and rotate read them from
standard input (one final newline is dropped) or from --from-file.`,
	}
	cmd.AddCommand(secretPutCmd(g, false), secretPutCmd(g, true), secretGetCmd(g), secretListCmd(g),
		secretVersionsCmd(g), secretDeleteCmd(g), secretStatusCmd(g), secretUnsealCmd(g), secretRotateKEKCmd(g))
	return cmd
}

// pathArg checks the one PATH argument, and refuses with a hint whatever
// looks like a value given on the command line.
func pathArg(args []string) (string, error) {
	if len(args) != 1 {
		if len(args) > 1 {
			return "", errors.New(errValueOnArgv)
		}
		return "", errors.New("give the secret's PATH, such as orders/db/password")
	}
	if err := vault.CheckPath(args[0]); err != nil {
		if strings.ContainsAny(args[0], "=: ") {
			return "", fmt.Errorf("%w; %s", err, errValueOnArgv)
		}
		return "", err
	}
	return args[0], nil
}

// readValue reads a value from file, or standard input without one final
// newline; at most vault.MaxValueBytes.
func readValue(cmd *cobra.Command, file string, generate int) ([]byte, error) {
	if generate > 0 {
		if generate > vault.MaxValueBytes/2 {
			return nil, fmt.Errorf("--generate %d: at most %d bytes", generate, vault.MaxValueBytes/2)
		}
		return vault.Generate(generate)
	}
	var r io.Reader = cmd.InOrStdin()
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	value, err := io.ReadAll(io.LimitReader(r, vault.MaxValueBytes+2))
	if err != nil {
		return nil, err
	}
	if file == "" {
		switch {
		case len(value) > 1 && string(value[len(value)-2:]) == "\r\n":
			value = value[:len(value)-2]
		case len(value) > 0 && value[len(value)-1] == '\n':
			value = value[:len(value)-1]
		}
	}
	switch {
	case len(value) > vault.MaxValueBytes:
		clear(value)
		return nil, vault.ErrTooLarge
	case len(value) == 0:
		return nil, errors.New("the value is empty: pipe it on standard input or use --from-file")
	}
	return value, nil
}

func secretPutCmd(g *globals, rotate bool) *cobra.Command {
	var fromFile, value string
	var generate int
	use, short := "put PATH [--from-file FILE] < value", "Store a new version of a secret (value from standard input or a file)"
	if rotate {
		use, short = "rotate PATH [--from-file FILE | --generate N] < value", "Store a new version of an existing secret (or a generated one)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if value != "" {
				return errors.New(errValueOnArgv)
			}
			path, err := pathArg(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := readValue(cmd, fromFile, generate)
			if err != nil {
				return err
			}
			defer clear(v)
			ver, err := c.PutSecret(cmd.Context(), path, v, rotate)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s version %d\n", ver.Path, ver.Version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&fromFile, "from-file", "", "read the value from FILE (as is)")
	f.StringVar(&value, "value", "", "refused: values never come from the command line")
	_ = f.MarkHidden("value")
	if rotate {
		f.IntVar(&generate, "generate", 0, "generate N random bytes (stored base64url) instead of reading a value; not printed")
	}
	return cmd
}

func secretGetCmd(g *globals) *cobra.Command {
	var version int64
	var identityDir string
	cmd := &cobra.Command{
		Use:   "get PATH [--version N] [--identity-dir DIR]",
		Short: "Print a secret's value, if a SecretPolicy lets the caller read it",
		Long: `Get prints the value to standard output, nothing else. The caller is the
operator credential, or with --identity-dir the workload identity kept
there (svid.pem, key.pem, as ward sidecar and ward run keep it).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := pathArg(args)
			if err != nil {
				return err
			}
			c, err := secretReader(g, identityDir)
			if err != nil {
				return err
			}
			sec, err := c.GetSecret(cmd.Context(), path, version)
			if err != nil {
				return err
			}
			defer clear(sec.Value)
			_, err = g.out.Write(sec.Value)
			return err
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "version to read (default: the newest)")
	cmd.Flags().StringVar(&identityDir, "identity-dir", "", "read with the workload identity in DIR instead of the operator credential")
	return cmd
}

// secretReader is a client presenting the operator credential, or the
// workload SVID kept in dir.
func secretReader(g *globals, dir string) (*control.Client, error) {
	if dir == "" {
		return g.client()
	}
	svid, bundle, err := identity.LoadSVID(dir)
	if err != nil {
		return nil, fmt.Errorf("--identity-dir: %w", err)
	}
	server := g.server
	if server == "" && g.dataDir != "" {
		c, err := g.client()
		if err != nil {
			return nil, err
		}
		server = c.Server()
	}
	if server == "" {
		return nil, errors.New("--identity-dir needs --server URL (or --data-dir)")
	}
	return control.NewClient(server, bundle, svid.TLSCertificate())
}

func secretListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List secrets (paths and versions, never values)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			list, err := c.ListSecrets(cmd.Context(), prefix)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.out, list)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PATH\tVERSION\tUPDATED\tSTATE")
			for _, s := range list.Secrets {
				state := "active"
				if s.DeletedAt != nil {
					state = "deleted " + s.DeletedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Path, s.Latest, s.UpdatedAt.UTC().Format(time.RFC3339), state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func secretVersionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "versions PATH",
		Short: "List a secret's versions: who wrote each and when",
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := pathArg(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			vs, err := c.SecretVersions(cmd.Context(), path)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tCREATED\tBY")
			for _, v := range vs.Versions {
				fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.CreatedAt.UTC().Format(time.RFC3339), v.CreatedBy)
			}
			if vs.Secret.DeletedAt != nil {
				fmt.Fprintf(tw, "deleted %s by %s\n", vs.Secret.DeletedAt.UTC().Format(time.RFC3339), vs.Secret.DeletedBy)
			}
			return tw.Flush()
		},
	}
}

func secretDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete a secret (a tombstone: its versions are kept for the retention period)",
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := pathArg(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), path); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s deleted\n", path)
			return nil
		},
	}
}

func secretStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether the vault is sealed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.VaultStatus(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, map[bool]string{true: "sealed", false: "unsealed"}[st.Sealed])
			return nil
		},
	}
}

// readKEK reads a key-encryption key from file (which must be 0600) or
// standard input, and checks its form here, before the server sees it.
func readKEK(cmd *cobra.Command, file string) (string, error) {
	source := "standard input"
	var text string
	if file != "" {
		source = file
		var err error
		if text, err = ca.ReadKEKText(file); err != nil {
			return "", err
		}
	} else {
		data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<10))
		if err != nil {
			return "", err
		}
		defer clear(data)
		text = string(data)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return "", fmt.Errorf("no key-encryption key in %s (want base64 of 32 bytes)", source)
	}
	if _, err := ca.ParseKEK(text); err != nil {
		return "", fmt.Errorf("%s: %w", source, err)
	}
	return text, nil
}

func secretUnsealCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "unseal < kek",
		Short: "Unseal the vault with the key-encryption key (read from standard input)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			kek, err := readKEK(cmd, file)
			if err != nil {
				return err
			}
			st, err := c.Unseal(cmd.Context(), kek)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, map[bool]string{true: "sealed", false: "unsealed"}[st.Sealed])
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "kek-file", "", "read the key from FILE (mode 0600) instead of standard input")
	return cmd
}

func secretRotateKEKCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "rotate-kek < new-kek",
		Short: "Rewrap every secret's data key with a new key-encryption key",
		Long: `Rotate-kek rewraps the data key of every secret version with the new key
(base64 of 32 bytes, from standard input or --kek-file), in one transaction;
values are not re-encrypted. The server's own key (its --kek-file, $WARD_KEK
or DATA_DIR/kek) still seals the CA: after a restart with it the vault starts
sealed, and ward secret unseal takes the new key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			kek, err := readKEK(cmd, file)
			if err != nil {
				return err
			}
			out, err := c.RotateKEK(cmd.Context(), kek)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, "rewrapped "+strconv.Itoa(out.Rewrapped)+" data keys")
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "kek-file", "", "read the new key from FILE (mode 0600) instead of standard input")
	return cmd
}
