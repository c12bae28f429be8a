package proxy

import "time"

// Defaults for the fields of [Limits] left at zero.
const (
	DefaultMaxHeaderBytes = 32 << 10 // like nginx's 4 x 8k large_client_header_buffers
	DefaultMaxHeaders     = 100      // like Envoy's max_headers_count
	DefaultMaxURLBytes    = 8 << 10
	DefaultMaxBodyBytes   = 16 << 20
	DefaultHeaderTimeout  = 10 * time.Second
)

// Limits bound what one request may use on a guarded connection. A zero
// (or negative) field selects its default, except MaxBodyBytes, where a
// negative value means no limit.
type Limits struct {
	// MaxHeaderBytes bounds the request head: request line, header fields
	// and the empty line that ends them, CRLFs included. A larger head is
	// answered 431. The http.Server's own MaxHeaderBytes must not be lower
	// (its default, 1 MiB, is fine).
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header fields, and separately the
	// number of trailer fields of a chunked body. More are answered 431.
	MaxHeaders int
	// MaxURLBytes bounds the request target. A longer one is answered 414.
	MaxURLBytes int
	// MaxBodyBytes bounds a request body. A larger Content-Length is
	// answered 413; a chunked body that grows past it fails with a
	// [FramingError] of status 413.
	MaxBodyBytes int64
	// HeaderTimeout bounds the time a client may take to send a request
	// head: from the accept (or the wrap) for the first request of a
	// connection, from its first byte for the next ones. A slower client
	// is answered 408. Idle time between keep-alive requests is left to
	// http.Server.IdleTimeout, slow bodies to http.Server.ReadTimeout or
	// the handler.
	HeaderTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	if l.MaxURLBytes <= 0 {
		l.MaxURLBytes = DefaultMaxURLBytes
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	return l
}
