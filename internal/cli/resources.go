package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/resource"
)

// maxResourceFiles bounds what `-f DIR` reads.
const maxResourceFiles = 200

// readResourceFiles reads a file, or every *.yaml and *.yml file below a
// directory (sorted), for an apply.
func readResourceFiles(path string) ([]control.ResourceFile, error) {
	if path == "" {
		return nil, errors.New("-f FILE|DIR is required")
	}
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(os.Stdin, resource.MaxFileSize+1))
		if err != nil {
			return nil, err
		}
		return []control.ResourceFile{{Name: "<stdin>", Data: string(data)}}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var paths []string
	if !fi.IsDir() {
		paths = []string{path}
	} else {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("%s: no .yaml or .yml files", path)
		}
		if len(paths) > maxResourceFiles {
			return nil, fmt.Errorf("%s: %d resource files, at most %d in one apply", path, len(paths), maxResourceFiles)
		}
		slices.Sort(paths)
	}
	var files []control.ResourceFile
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, resource.MaxFileSize+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if len(data) > resource.MaxFileSize {
			return nil, fmt.Errorf("%s: larger than %d bytes", p, resource.MaxFileSize)
		}
		files = append(files, control.ResourceFile{Name: p, Data: string(data)})
	}
	return files, nil
}

// refused prints the located problems of a refused change, one a line
// (file:line: field: message), and returns the error to exit with.
func (g *globals) refused(err error) error {
	var ae *control.APIError
	if !errors.As(err, &ae) || len(ae.Body.Problems) == 0 {
		return err
	}
	for _, p := range ae.Body.Problems {
		e := resource.Error{File: p.File, Line: p.Line, Path: p.Path, Msg: p.Message}
		fmt.Fprintln(g.errw, e.Error())
	}
	return fmt.Errorf("refused: %d problem(s); nothing was changed", len(ae.Body.Problems))
}

// printChange reports what a change did ("applied") or, on a dry run,
// what it would do ("applying").
func (g *globals) printChange(resp control.ChangeResponse, done, doing string) {
	switch {
	case len(resp.Changes) == 0:
		fmt.Fprintf(g.out, "no change: the server is at version %d\n", resp.Version)
		return
	case resp.DryRun:
		fmt.Fprintf(g.out, "dry run: %s would make version %d from version %d; nothing was recorded\n", doing, resp.Previous+1, resp.Previous)
	default:
		fmt.Fprintf(g.out, "%s: version %d (was %d)\n", done, resp.Version, resp.Previous)
	}
	for _, c := range resp.Changes {
		fmt.Fprintln(g.out, "  "+c)
	}
}

// kindName accepts a kind in any case ("accesspolicy", "AccessPolicy").
func kindName(s string) string {
	for _, k := range []string{resource.KindService, resource.KindAccessPolicy, resource.KindRoute, resource.KindIssuer, resource.KindSecretPolicy, resource.KindBan} {
		if strings.EqualFold(s, k) {
			return k
		}
	}
	return s
}

// changeFlags adds the flags every change command shares.
func changeFlags(cmd *cobra.Command, dryRun *bool, base *int64) {
	cmd.Flags().BoolVar(dryRun, "dry-run", false, "validate and show the change on the server without recording it")
	cmd.Flags().Int64Var(base, "base-version", 0, "refuse the change unless the server is still at this version")
}

func applyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	var base int64
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR [--dry-run] [--base-version N]",
		Short: "Create or update resources on the server (validated, versioned, pushed to every proxy)",
		Long: `Apply sends resource documents (a file, every .yaml/.yml file below a
directory, or - for standard input) to the server, which validates them
together with everything already applied (references, overlapping routes,
CEL conditions), records the result as a new version with its diff, and
pushes each gateway and sidecar its part within a second. Objects not named
stay as they are. Nothing changes when anything is wrong: every problem is
printed with its file and line.

--base-version N refuses the change if the server has moved past version N
since you looked (ward diff prints the version it compared with).`,
		Example: `  ward apply -f policies/
  ward diff -f orders.yaml && ward apply -f orders.yaml --base-version 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := readResourceFiles(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Apply(cmd.Context(), control.ApplyRequest{Files: files, BaseVersion: base, DryRun: dryRun})
			if err != nil {
				return g.refused(err)
			}
			g.printChange(resp, "applied", "applying")
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "resource file, directory, or - for standard input")
	changeFlags(cmd, &dryRun, &base)
	return cmd
}

func diffCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR",
		Short: "Show what applying resources would change (a server-side dry run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := readResourceFiles(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Apply(cmd.Context(), control.ApplyRequest{Files: files, DryRun: true})
			if err != nil {
				return g.refused(err)
			}
			if len(resp.Changes) == 0 {
				fmt.Fprintf(g.out, "no change against version %d\n", resp.Version)
				return nil
			}
			fmt.Fprint(g.out, resp.Diff)
			fmt.Fprintf(g.errw, "against version %d: %s\napply exactly this with: ward apply -f %s --base-version %d\n",
				resp.Previous, strings.Join(resp.Changes, " "), file, resp.Previous)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "resource file, directory, or - for standard input")
	return cmd
}

func getCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get [KIND [NAME]]",
		Short: "Print the server's current resources as YAML",
		Example: `  ward get
  ward get accesspolicy
  ward get service orders`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var kind, name string
			if len(args) > 0 {
				kind = kindName(args[0])
			}
			if len(args) > 1 {
				name = args[1]
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Resources(cmd.Context(), kind, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "# ward resources, version %d\n%s", resp.Version, resp.Documents)
			if kind != "" && kind != resource.KindService {
				return nil
			}
			// The live set, as comments: the output stays a resource file.
			list, err := c.Instances(cmd.Context(), name)
			if err != nil {
				return err
			}
			now := time.Now()
			for i, in := range list {
				if i == 0 {
					fmt.Fprintln(g.out, "# registered instances (ward instances), merged into the endpoints proxies get:")
				}
				fmt.Fprintf(g.out, "#   %s %s (%s, up %s)\n", in.Service, in.Address, instanceHealth(in, now), age(now.Sub(in.Started)))
			}
			return nil
		},
	}
}

func deleteCmd(g *globals) *cobra.Command {
	var dryRun bool
	var base int64
	cmd := &cobra.Command{
		Use:     "delete KIND NAME [--dry-run] [--base-version N]",
		Short:   "Remove one resource (refused if others still refer to it)",
		Example: `  ward delete accesspolicy orders-callers`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Delete(cmd.Context(), control.DeleteRequest{Kind: kindName(args[0]), Name: args[1], BaseVersion: base, DryRun: dryRun})
			if err != nil {
				return g.refused(err)
			}
			g.printChange(resp, "deleted", "deleting")
			return nil
		},
	}
	changeFlags(cmd, &dryRun, &base)
	return cmd
}

func historyCmd(g *globals) *cobra.Command {
	var limit int
	var before int64
	cmd := &cobra.Command{
		Use:   "history [VERSION]",
		Short: "List the versions of the resources (who, when, what), or show one with its diff",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				v, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || v <= 0 {
					return fmt.Errorf("version %q: give a positive whole number", args[0])
				}
				info, err := c.Version(cmd.Context(), v)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.out, "version %d  %s  %s  by %s\n", info.Version, info.Time.UTC().Format(time.RFC3339), info.Action, info.Author)
				for _, ch := range info.Changes {
					fmt.Fprintln(g.out, "  "+ch)
				}
				fmt.Fprint(g.out, info.Diff)
				return nil
			}
			resp, err := c.History(cmd.Context(), before, limit)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tAUTHOR\tACTION\tCHANGES")
			for _, v := range resp.Versions {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Version, v.Time.UTC().Format(time.RFC3339), v.Author, v.Action, strings.Join(v.Changes, " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many versions (up to 1000)")
	cmd.Flags().Int64Var(&before, "before", 0, "only versions older than this one")
	return cmd
}

func rollbackCmd(g *globals) *cobra.Command {
	var dryRun bool
	var base int64
	cmd := &cobra.Command{
		Use:   "rollback VERSION [--dry-run] [--base-version N]",
		Short: "Make an earlier version's resources current again (recorded as a new version)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || v <= 0 {
				return fmt.Errorf("version %q: give a positive whole number", args[0])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Rollback(cmd.Context(), control.RollbackRequest{Version: v, BaseVersion: base, DryRun: dryRun})
			if err != nil {
				return g.refused(err)
			}
			g.printChange(resp, fmt.Sprintf("rolled back to version %d", v), fmt.Sprintf("rolling back to version %d", v))
			return nil
		},
	}
	changeFlags(cmd, &dryRun, &base)
	return cmd
}
