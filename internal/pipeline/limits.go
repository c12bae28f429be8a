package pipeline

import (
	"time"

	"github.com/wardsec/ward/internal/resource"
)

// Limits bound the work one request may cause, in every role. Zero values
// take the defaults.
type Limits struct {
	MaxHeaderBytes    int           // default 32 KiB
	MaxBodyBytes      int64         // ceiling over every limits.body; default 1 GiB
	ReadHeaderTimeout time.Duration // a request head must arrive within it; default 10s
	ConnectTimeout    time.Duration // to a service's sidecar or the app; default 3s
	RequestTimeout    time.Duration // for a service's response headers; default 60s
}

// WithDefaults returns l with every zero value replaced by its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 32 << 10
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = resource.MaxBodyLimit
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = 3 * time.Second
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = 60 * time.Second
	}
	return l
}
