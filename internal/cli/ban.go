package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/resource"
)

// maxBanTTL bounds a ban made from the command line.
const maxBanTTL = 365 * 24 * time.Hour

func banCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ban",
		Short: "Refuse a caller on every gateway and sidecar within a second (admins only)",
		Long: `A ban names one caller: a source address or CIDR, an API key (its prefix),
a user (issuer and subject) or a workload (SPIFFE ID). Every gateway and
sidecar answers its requests 403 with reason "banned" before any
authentication work, until the ban expires; proxies that cannot reach the
server keep enforcing the bans they have. Bans are resources of kind Ban:
"ward get ban" and "ward history" show them too. Only admins may add or
lift them.`,
	}
	cmd.AddCommand(banAddCmd(g), banListCmd(g), banRemoveCmd(g))
	return cmd
}

func banAddCmd(g *globals) *cobra.Command {
	var spec resource.BanSpec
	var user, name string
	var ttl time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "add (--source ADDR|CIDR | --api-key PREFIX | --user ISSUER,SUBJECT | --spiffe-id ID) --ttl DURATION --reason TEXT",
		Short: "Ban a caller for a while",
		Example: `  ward ban add --source 203.0.113.7 --ttl 1h --reason "credential stuffing"
  ward ban add --api-key abcdefgh --ttl 24h --reason "key leaked in a public repository"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user != "" {
				iss, sub, ok := strings.Cut(user, ",")
				if !ok || iss == "" || sub == "" {
					return fmt.Errorf("--user %q: give ISSUER,SUBJECT (the issuer as the access records show it)", user)
				}
				spec.User = resource.BannedUser{Issuer: iss, Subject: sub}
			}
			switch {
			case ttl <= 0:
				return errors.New("--ttl is required: how long the ban lasts, such as 1h")
			case ttl > maxBanTTL:
				return fmt.Errorf("--ttl %v: at most %v", ttl, maxBanTTL)
			}
			spec.Expires = time.Now().Add(ttl).UTC().Format(time.RFC3339)
			if spec.By == "" {
				spec.By = "ward ban add"
			}
			if name == "" {
				name = banName(&spec)
			}
			obj := resource.Object{APIVersion: resource.APIVersion, Kind: resource.KindBan, Metadata: resource.Metadata{Name: name}, Spec: &spec}
			doc := resource.Marshal([]resource.Object{obj})
			// Parse locally first: a bad flag is reported by its name,
			// before anything reaches the server.
			if _, err := resource.Parse("ban", doc); err != nil {
				return fmt.Errorf("invalid ban: %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Apply(cmd.Context(), control.ApplyRequest{Files: []control.ResourceFile{{Name: "ward ban add", Data: string(doc)}}, DryRun: dryRun})
			if err != nil {
				return g.refused(err)
			}
			fmt.Fprintf(g.out, "Ban/%s until %s\n", name, spec.Expires)
			g.printChange(resp, "banned", "banning")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Source, "source", "", "an IP address or CIDR")
	f.StringVar(&spec.APIKey, "api-key", "", "the prefix of an API key (the 8 characters after wak_)")
	f.StringVar(&user, "user", "", "ISSUER,SUBJECT of a user")
	f.StringVar(&spec.SPIFFEID, "spiffe-id", "", "a workload's SPIFFE ID")
	f.DurationVar(&ttl, "ttl", 0, "how long the ban lasts (required)")
	f.StringVar(&spec.Reason, "reason", "", "why, for the audit log (required)")
	f.StringVar(&spec.By, "by", "", "who or what asks for the ban (default: ward ban add; the audit record names the operator)")
	f.StringVar(&name, "name", "", "the Ban resource's name (default: derived from the caller, so banning again extends the ban)")
	f.BoolVar(&dryRun, "dry-run", false, "validate and show the change on the server without recording it")
	return cmd
}

// banName derives a resource name from whom a ban names, so that banning
// the same caller again replaces the ban instead of adding another.
func banName(s *resource.BanSpec) string {
	sum := sha256.Sum256([]byte(s.Source + "\x00" + s.APIKey + "\x00" + s.User.Issuer + "\x00" + s.User.Subject + "\x00" + s.SPIFFEID))
	return "ban-" + hex.EncodeToString(sum[:6])
}

func banListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the bans in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Resources(cmd.Context(), resource.KindBan, "")
			if err != nil {
				return err
			}
			objs, err := resource.Parse("server", []byte(resp.Documents))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCALLER\tEXPIRES\tLEFT\tREASON\tBY")
			now := time.Now()
			for _, o := range objs {
				s, ok := o.Spec.(*resource.BanSpec)
				if !ok {
					continue
				}
				left := s.ExpiresAt().Sub(now).Truncate(time.Second)
				if left <= 0 {
					continue // expired: the server removes it within a second
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", o.Metadata.Name, banCaller(s), s.Expires, left, s.Reason, s.By)
			}
			return tw.Flush()
		},
	}
}

func banCaller(s *resource.BanSpec) string {
	switch {
	case s.Source != "":
		return "source " + s.Source
	case s.APIKey != "":
		return "api-key " + s.APIKey
	case s.User != (resource.BannedUser{}):
		return "user " + s.User.Issuer + "," + s.User.Subject
	default:
		return "spiffe-id " + s.SPIFFEID
	}
}

func banRemoveCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Lift a ban before it expires",
		Example: `  ward ban remove ban-1a2b3c4d5e6f`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Delete(cmd.Context(), control.DeleteRequest{Kind: resource.KindBan, Name: args[0], DryRun: dryRun})
			if err != nil {
				return g.refused(err)
			}
			g.printChange(resp, "lifted", "lifting")
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the change on the server without recording it")
	return cmd
}
