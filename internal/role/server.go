package role

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/ca"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/proxy"
)

// Server is the control plane role (`ward server`).
type Server struct {
	Config control.ServerConfig
	// KEK, if set, is where the key-encryption key comes from, one line
	// (base64 of 32 bytes, as a kek file holds) at a time: standard input
	// for `ward server --kek-stdin`. The server then starts sealed: until a
	// line holds a key that opens its keys, its public listener answers
	// only that it is sealed and nothing else of it is open. A malformed
	// or wrong key is refused and the next line read; the end of KEK while
	// sealed ends Run with an error. When KEK is an io.Closer, Run closes
	// it if its context ends while sealed, so that no read outlives Run.
	KEK io.Reader
	// Ready, if set, is called once the server is initialised and bound,
	// before it serves (to learn its URL, CA and data directory).
	Ready func(*control.Server)
}

// Run opens the server (its store, CA, audit log and listeners,
// initialising the data directory on first start), serves until ctx ends,
// then releases all of it. With KEK set it first waits, sealed, for a key
// that opens the server.
func (s *Server) Run(ctx context.Context) error {
	if s.KEK == nil {
		return s.run(ctx, s.Config)
	}
	log := s.Config.Log
	if log == nil {
		log = slog.Default()
	}
	lines := newLineReader(s.KEK)
	defer lines.stop()
	cfg := s.Config
	for {
		kek, public, err := s.sealed(ctx, log, lines, cfg.PublicListen)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil // stopped while sealed: a clean exit, as when serving
		}
		if err != nil {
			return err
		}
		// The server answers where it answered sealed (the port it was
		// given, when it was given port 0).
		cfg.PublicListen, cfg.KEK = public, kek
		srv, err := control.NewServer(ctx, cfg)
		if errors.Is(err, ca.ErrWrongKEK) {
			log.Warn("the server stays sealed: the key-encryption key read on standard input does not open its keys; give the right one")
			continue
		}
		if err != nil {
			return err
		}
		log.Info("server unsealed")
		return s.serve(ctx, srv)
	}
}

// run is the server's one way to start: NewServer, then serve.
func (s *Server) run(ctx context.Context, cfg control.ServerConfig) error {
	srv, err := control.NewServer(ctx, cfg)
	if err != nil {
		return err
	}
	return s.serve(ctx, srv)
}

func (s *Server) serve(ctx context.Context, srv *control.Server) error {
	defer srv.Close()
	if s.Ready != nil {
		s.Ready(srv)
	}
	return srv.Run(ctx)
}

// sealed serves control.SealedPublic on the public listener until a line
// parses as a key, then closes that listener and returns the key (whether
// it opens the server is NewServer's to find) and the address it was
// bound to.
func (s *Server) sealed(ctx context.Context, log *slog.Logger, lines *lineReader, public string) (*ca.KEK, string, error) {
	l, err := net.Listen("tcp", public)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", public, err)
	}
	public = l.Addr().String()
	hs := &http.Server{
		Handler:           control.SealedPublic(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- proxy.Serve(sctx, hs, l) }()
	defer func() { cancel(); <-served }()
	log.Warn("the server is sealed: write its key-encryption key (base64 of 32 bytes) on standard input", "public", l.Addr().String())
	for {
		line, err := lines.next(ctx)
		switch {
		case errors.Is(err, io.EOF):
			return nil, "", errors.New("standard input ended while the server is sealed: no key-encryption key was given")
		case err != nil:
			return nil, "", err
		}
		kek, err := ca.ParseKEK(strings.TrimSpace(string(line)))
		clear(line)
		if err != nil {
			log.Warn("the server stays sealed: the line read on standard input is not a key-encryption key (base64 of 32 bytes)")
			continue
		}
		return kek, public, nil
	}
}

// lineReader reads one line at a time on demand, in a goroutine so that a
// context can end the wait; no read is started unless a line is asked for.
type lineReader struct {
	r      io.Reader
	br     *bufio.Reader
	asks   chan struct{}
	got    chan lineRead
	done   chan struct{}
	closed chan struct{}
}

type lineRead struct {
	line []byte
	err  error
}

// maxKEKLine bounds a line read for a key: a key is 44 bytes of base64.
const maxKEKLine = 4 << 10

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{r: r, br: bufio.NewReaderSize(r, maxKEKLine), asks: make(chan struct{}),
		got: make(chan lineRead, 1), done: make(chan struct{}), closed: make(chan struct{})}
	go lr.loop()
	return lr
}

func (lr *lineReader) loop() {
	defer close(lr.closed)
	for {
		select {
		case <-lr.done:
			return
		case <-lr.asks:
		}
		line, err := lr.readLine()
		lr.got <- lineRead{line, err}
	}
}

// readLine reads up to a newline; a line longer than maxKEKLine is
// discarded whole and given back empty (it cannot be a key).
func (lr *lineReader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := lr.br.ReadSlice('\n')
		if len(line)+len(frag) <= maxKEKLine {
			line = append(line, frag...)
		} else {
			clear(line)
			line = line[:0:0]
		}
		clear(frag)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil, len(line) > 0 && errors.Is(err, io.EOF):
			return line, nil
		default:
			return nil, err
		}
	}
}

// next waits for the next line, or for ctx.
func (lr *lineReader) next(ctx context.Context) ([]byte, error) {
	select {
	case lr.asks <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-lr.got:
		return r.line, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stop ends the reading goroutine. A read in progress is ended by closing
// the reader when it can be closed; one that cannot (standard input) ends
// with the process.
func (lr *lineReader) stop() {
	close(lr.done)
	select {
	case <-lr.closed:
		return
	default:
	}
	if c, ok := lr.r.(io.Closer); ok {
		_ = c.Close()
		<-lr.closed
	}
}
