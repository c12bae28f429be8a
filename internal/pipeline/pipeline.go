package pipeline

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Refusal is a stage's verdict: the zero value lets the request go on;
// any other stops it with Reason, Detail going to the record only.
type Refusal struct {
	Reason Reason
	Detail string
}

// Refused reports whether r stops the request.
func (r Refusal) Refused() bool { return r.Reason.Code != "" }

// Refuse returns a refusal with reason and an operator's detail.
func Refuse(reason Reason, detail string) Refusal { return Refusal{Reason: reason, Detail: detail} }

// Stage is one step of the request path. Run reads and updates the
// exchange; it returns a Refusal to stop the request (the pipeline then
// answers and records it), or the zero Refusal to go on. A stage that
// holds something until the request is over (a concurrency slot, body
// buffers) registers its release with Exchange.Defer.
type Stage[S any] struct {
	Name string
	Run  func(x *Exchange[S]) Refusal
}

// Exchange is one request on its way through a pipeline. S is the role's
// own state (the gateway's route and principal, the sidecar's peer).
// Exchanges are pooled: nothing may keep one after the request.
type Exchange[S any] struct {
	ID       string
	Start    time.Time
	R        *http.Request
	W        Writer
	Source   string // the client's address (IP), as the connection shows it
	Path     string // the normalized path, once a stage set it
	Refusal  Refusal
	Recorded bool // an allow record was written before forwarding
	State    S

	deferred [4]func()
	nDefer   int
}

// Defer runs f once the request is over, after the response, in reverse
// order of registration. At most four per request.
func (x *Exchange[S]) Defer(f func()) {
	if x.nDefer == len(x.deferred) {
		panic("pipeline: more than four deferred releases in one request")
	}
	x.deferred[x.nDefer] = f
	x.nDefer++
}

// Config is a role's pipeline.
type Config[S any] struct {
	// Stages run in order; the last one forwards.
	Stages []Stage[S]
	// Begin fills in the role's state of a new exchange; may be nil.
	Begin func(x *Exchange[S])
	// Record runs once the request is over (with the refusal, if any, in
	// x.Refusal): it writes the exchange's record and its metrics. A role
	// that records before forwarding sets x.Recorded in that stage; Record
	// then writes again only if the request was refused after it.
	Record func(x *Exchange[S])
	// NoResponseID leaves the request id out of the response head (a
	// sidecar's answer goes back through a gateway that set its own).
	NoResponseID bool
	// OnHeader runs before the response head is written; may be nil.
	OnHeader func(http.Header)
}

// Pipeline runs the stages of one role. It is an http.Handler.
type Pipeline[S any] struct {
	cfg  Config[S]
	pool sync.Pool
}

// New returns the pipeline of cfg.
func New[S any](cfg Config[S]) *Pipeline[S] {
	p := &Pipeline[S]{cfg: cfg}
	p.pool.New = func() any { return new(Exchange[S]) }
	return p
}

// ServeHTTP runs r through the stages.
func (p *Pipeline[S]) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	x := p.pool.Get().(*Exchange[S])
	x.ID, x.Start, x.R = NewRequestID(), time.Now(), r
	x.W = Writer{ResponseWriter: rw, OnHeader: p.cfg.OnHeader}
	x.Source = sourceIP(r.RemoteAddr)
	if !p.cfg.NoResponseID {
		rw.Header().Set(HeaderRequestID, x.ID)
	}
	if p.cfg.Begin != nil {
		p.cfg.Begin(x)
	}
	p.run(x)
	for i := x.nDefer - 1; i >= 0; i-- {
		x.deferred[i]()
		x.deferred[i] = nil
	}
	p.cfg.Record(x)
	*x = Exchange[S]{}
	p.pool.Put(x)
}

func (p *Pipeline[S]) run(x *Exchange[S]) {
	for i := range p.cfg.Stages {
		if ref := p.cfg.Stages[i].Run(x); ref.Refused() {
			x.Refusal = ref
			if x.W.Status == 0 {
				Render(&x.W, ref.Reason, x.ID)
			}
			return
		}
	}
}

// sourceIP is the host of a "host:port" remote address, or the address
// itself when it has no port.
func sourceIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// StageNames lists the pipeline's stages in order.
func (p *Pipeline[S]) StageNames() []string {
	names := make([]string, len(p.cfg.Stages))
	for i, s := range p.cfg.Stages {
		names[i] = s.Name
	}
	return names
}

// Prefix returns a pipeline of the first n stages, with the same hooks:
// benchmarks measure each prefix, so each stage's price is the difference
// it makes.
func (p *Pipeline[S]) Prefix(n int) *Pipeline[S] {
	cfg := p.cfg
	cfg.Stages = cfg.Stages[:n:n]
	return New(cfg)
}
