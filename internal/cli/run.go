package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/role"
	"github.com/wardsec/ward/internal/vault"
)

// secretRef is one --secret or --secret-file: an environment variable and
// the secret it receives (the value, or the path of a file holding it).
type secretRef struct {
	env, path string
	file      bool
}

type runFlags struct {
	service, token, dir, filesDir string
	secrets, secretFiles          []string
	watch                         bool
	watchEvery                    time.Duration
	watchSignal                   string
}

func runCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --service NAME --server URL --bundle FILE --secret ENV=PATH [--secret-file ENV=PATH] [--watch] -- APP [ARGS...]",
		Short: "Start an app with its secrets in its environment, fetched with the workload's identity",
		Long: `Run fetches the secrets named by --secret and --secret-file from the vault
over mutual TLS with the identity spiffe://TD/svc/NAME (enrolled with --token
on first start and kept in --data-dir, or reused from there), then starts APP
with each --secret ENV=PATH as an environment variable ENV holding the value.
Each --secret-file ENV=PATH instead writes the value to a file of mode 0600 in
a private directory (on tmpfs: $XDG_RUNTIME_DIR or /dev/shm, unless
--files-dir says where) and sets ENV to that file's path.

Values are never printed or logged and never on a command line. If a secret
is missing or denied, run says which and APP is not started.

Without --watch or --secret-file, run replaces itself with APP (exec): APP
gets run's process id, signals and exit status. Otherwise run stays as APP's
parent: it forwards signals, exits with APP's status (128+N if a signal N
ended it) and removes the secret files afterwards. With --watch it reads
the secrets again every --watch-interval and, when one has a new version,
rewrites the files and sends --watch-signal to APP, or, for environment
secrets (or --watch-signal restart), stops APP and starts it again with the
new values.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return errors.New("put the app after --: ward run [flags] -- APP [ARGS...]")
			}
			return runApp(cmd.Context(), g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.service, "service", "", "the service whose identity reads the secrets (spiffe://TD/svc/NAME)")
	fl.StringVar(&f.token, "token", "", "one-time join token for the first start")
	fl.StringVar(&f.dir, "data-dir", "", "where the SVID is kept (default ./ward-run-NAME)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "ENV=PATH: put secret PATH in environment variable ENV (repeatable)")
	fl.StringArrayVar(&f.secretFiles, "secret-file", nil, "ENV=PATH: write secret PATH to a 0600 file and put its path in ENV (repeatable)")
	fl.StringVar(&f.filesDir, "files-dir", "", "where to make the private directory of --secret-file files (default $XDG_RUNTIME_DIR or /dev/shm)")
	fl.BoolVar(&f.watch, "watch", false, "signal or restart APP when a secret it uses gets a new version")
	fl.DurationVar(&f.watchEvery, "watch-interval", 30*time.Second, "how often --watch reads the secrets again")
	fl.StringVar(&f.watchSignal, "watch-signal", "", "signal sent to APP when a --secret-file changes (HUP, USR1, USR2 or restart; default restart)")
	return cmd
}

// parseRefs reads ENV=PATH flags.
func parseRefs(f runFlags) ([]secretRef, error) {
	var refs []secretRef
	seen := map[string]bool{}
	for i, list := range [][]string{f.secrets, f.secretFiles} {
		flag := []string{"--secret", "--secret-file"}[i]
		for _, s := range list {
			env, path, ok := strings.Cut(s, "=")
			if !ok || !isEnvName(env) {
				return nil, fmt.Errorf("%s %q: want ENV=PATH, ENV a variable name such as DB_PASSWORD", flag, s)
			}
			if err := vault.CheckPath(path); err != nil {
				return nil, fmt.Errorf("%s %s: %w (a value never goes on the command line: name its path)", flag, env, err)
			}
			if seen[env] {
				return nil, fmt.Errorf("%s: %s is given twice", flag, env)
			}
			seen[env] = true
			refs = append(refs, secretRef{env: env, path: path, file: i == 1})
		}
	}
	if len(refs) == 0 {
		return nil, errors.New("name at least one --secret ENV=PATH or --secret-file ENV=PATH")
	}
	return refs, nil
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// fetchSecrets reads refs with the workload's client, as the demo's
// orders app gets its password: role.FetchSecrets.
func fetchSecrets(ctx context.Context, c *control.Client, refs []secretRef) (*role.Secrets, error) {
	paths := make([]role.SecretRef, len(refs))
	for i, r := range refs {
		paths[i] = role.SecretRef{Env: r.env, Path: r.path}
	}
	return role.FetchSecrets(ctx, c, paths)
}

func runApp(ctx context.Context, g *globals, f runFlags, args []string) error {
	if f.service == "" || g.server == "" || g.bundle == "" {
		return errors.New("--service, --server and --bundle are required")
	}
	refs, err := parseRefs(f)
	if err != nil {
		return err
	}
	signalOnChange, err := parseWatchSignal(f.watchSignal)
	if err != nil {
		return err
	}
	app, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("the app was not started: %w", err)
	}
	if f.dir == "" {
		f.dir = "ward-run-" + f.service
	}
	log := g.logger().With("role", "run", "service", f.service)
	bundle, err := loadBundle(g.bundle, "")
	if err != nil {
		return fmt.Errorf("the app was not started: %w", err)
	}
	w := role.Workload{Server: g.server, Bundle: bundle, Token: f.token, DataDir: f.dir, Log: log}
	src, client, err := w.Identity(ctx, role.ServiceID(f.service))
	if err != nil {
		return fmt.Errorf("the app was not started: %w", err)
	}
	defer client.CloseIdleConnections()
	freshen(ctx, src, log)
	sec, err := fetchSecrets(ctx, client, refs)
	if err != nil {
		return fmt.Errorf("the app was not started: %w", err)
	}
	hasFiles := len(f.secretFiles) > 0
	if !f.watch && !hasFiles {
		env := appEnv(refs, sec, "")
		sec.Wipe()
		// exec: the app takes over this process, its pid, signals and exit status.
		return syscall.Exec(app, args, env)
	}
	var filesDir string
	if hasFiles {
		if filesDir, err = privateDir(f.filesDir); err != nil {
			sec.Wipe()
			return fmt.Errorf("the app was not started: %w", err)
		}
		defer os.RemoveAll(filesDir)
		if err := writeSecretFiles(filesDir, refs, sec); err != nil {
			sec.Wipe()
			return fmt.Errorf("the app was not started: %w", err)
		}
	}
	s := &supervisor{app: app, args: args, refs: refs, filesDir: filesDir, log: log, signalOnChange: signalOnChange}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if f.watch {
		go func() { _ = src.Run(wctx) }() // renew the SVID while the app runs
	}
	code := s.run(wctx, client, sec, f.watch, f.watchEvery)
	cancel()
	if filesDir != "" {
		os.RemoveAll(filesDir)
	}
	os.Exit(code) // the app's status is run's
	return nil
}

// freshen renews a kept SVID past its half-life before run uses it, so
// that an app started again and again by a supervisor keeps an identity
// without a new join token. A renewal that does not come within a few
// seconds leaves the SVID as it is (still valid: LoadOrEnroll checked).
func freshen(ctx context.Context, src *identity.Source, log *slog.Logger) {
	leaf := src.Current().Leaf()
	if time.Until(leaf.NotAfter) > leaf.NotAfter.Sub(leaf.NotBefore)/2 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(rctx) }()
	for src.Current().Leaf() == leaf && rctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if src.Current().Leaf() == leaf {
		log.Warn("the kept svid is past its half-life and could not be renewed now; using it", "expires", leaf.NotAfter)
	}
}

func parseWatchSignal(s string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "", "RESTART":
		return 0, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	}
	return 0, fmt.Errorf("--watch-signal %q: use HUP, USR1, USR2 or restart", s)
}

// appEnv is run's environment, without any variable a secret sets, plus
// the secrets (values, or file paths under filesDir).
func appEnv(refs []secretRef, sec *role.Secrets, filesDir string) []string {
	names := map[string]bool{}
	for _, r := range refs {
		names[r.env] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !names[k] {
			env = append(env, kv)
		}
	}
	for _, r := range refs {
		if r.file {
			env = append(env, r.env+"="+filepath.Join(filesDir, r.env))
		} else {
			env = append(env, r.env+"="+string(sec.Values[r.env]))
		}
	}
	return env
}

// privateDir makes a directory of mode 0700 for secret files, on tmpfs
// when the system has one.
func privateDir(parent string) (string, error) {
	if parent == "" {
		for _, p := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/dev/shm"} {
			if fi, err := os.Stat(p); p != "" && err == nil && fi.IsDir() {
				parent = p
				break
			}
		}
	}
	if parent == "" {
		return "", errors.New("no tmpfs for --secret-file ($XDG_RUNTIME_DIR, /dev/shm): give --files-dir")
	}
	return os.MkdirTemp(parent, "ward-run-")
}

// writeSecretFiles writes each file secret, mode 0600, replacing the old
// file atomically.
func writeSecretFiles(dir string, refs []secretRef, sec *role.Secrets) error {
	for _, r := range refs {
		if !r.file {
			continue
		}
		tmp, err := os.CreateTemp(dir, "."+r.env+"-")
		if err != nil {
			return err
		}
		if err := tmp.Chmod(0o600); err != nil {
			tmp.Close()
			return err
		}
		_, err = tmp.Write(sec.Values[r.env])
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, r.env))
		}
		if err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

// supervisor keeps the app running as run's child.
type supervisor struct {
	app            string
	args           []string
	refs           []secretRef
	filesDir       string
	log            *slog.Logger
	signalOnChange syscall.Signal
}

func (s *supervisor) start(sec *role.Secrets) (*exec.Cmd, <-chan int, error) {
	cmd := &exec.Cmd{Path: s.app, Args: s.args, Env: appEnv(s.refs, sec, s.filesDir),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			done <- 0
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				done <- 128 + int(ws.Signal())
			} else {
				done <- ee.ExitCode()
			}
		default:
			done <- 1
		}
	}()
	return cmd, done, nil
}

// run starts the app, forwards signals to it, and with watch restarts or
// signals it when a secret changes. It returns the app's exit status.
func (s *supervisor) run(ctx context.Context, c *control.Client, sec *role.Secrets, watch bool, every time.Duration) int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	cmd, done, err := s.start(sec)
	versions := sec.Versions
	envHasSecrets := false
	for _, r := range s.refs {
		envHasSecrets = envHasSecrets || !r.file
	}
	sec.Wipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ward: the app was not started:", err)
		return 1
	}
	var tick <-chan time.Time
	if watch {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case code := <-done:
			return code
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
		case <-tick:
			next, err := fetchSecrets(ctx, c, s.refs)
			if err != nil {
				s.log.Warn("cannot read the secrets again; the app keeps the ones it has", "err", err)
				continue
			}
			if !changed(versions, next.Versions) {
				next.Wipe()
				continue
			}
			versions = next.Versions
			if s.filesDir != "" {
				if err := writeSecretFiles(s.filesDir, s.refs, next); err != nil {
					s.log.Warn("cannot rewrite the secret files", "err", err)
				}
			}
			if s.signalOnChange != 0 && !envHasSecrets {
				s.log.Info("a secret has a new version; signalling the app", "signal", s.signalOnChange.String())
				_ = cmd.Process.Signal(s.signalOnChange)
				next.Wipe()
				continue
			}
			s.log.Info("a secret has a new version; restarting the app")
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			cmd, done, err = s.start(next)
			next.Wipe()
			if err != nil {
				fmt.Fprintln(os.Stderr, "ward: the app could not be restarted:", err)
				return 1
			}
		}
	}
}

func changed(a, b map[string]int64) bool {
	for k, v := range b {
		if a[k] != v {
			return true
		}
	}
	return false
}
