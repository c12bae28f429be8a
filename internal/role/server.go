package role

import (
	"context"

	"github.com/wardsec/ward/internal/control"
)

// Server is the control plane role (`ward server`).
type Server struct {
	Config control.ServerConfig
	// Ready, if set, is called once the server is initialised and bound,
	// before it serves (to learn its URL, CA and data directory).
	Ready func(*control.Server)
}

// Run opens the server (its store, CA, audit log and listeners,
// initialising the data directory on first start), serves until ctx ends,
// then releases all of it.
func (s *Server) Run(ctx context.Context) error {
	srv, err := control.NewServer(ctx, s.Config)
	if err != nil {
		return err
	}
	defer srv.Close()
	if s.Ready != nil {
		s.Ready(srv)
	}
	return srv.Run(ctx)
}
