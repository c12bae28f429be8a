package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [BodyConfig].
const (
	// DefaultBodyLimit is the largest request body a Route or Service
	// accepts unless it says otherwise (like nginx's client_max_body_size).
	DefaultBodyLimit = 1 << 20
	// DefaultBodyBuffer is the bound up to which a body is received whole
	// before anything is forwarded.
	DefaultBodyBuffer = 1 << 20
	// DefaultBodyBudget is the process-wide bound on buffered body bytes.
	DefaultBodyBudget = 256 << 20
	// DefaultMinBodyRate and DefaultBodyGrace: after the grace period a
	// body must have arrived at this many bytes per second on average.
	DefaultMinBodyRate = 4 << 10
	DefaultBodyGrace   = 10 * time.Second
	// DefaultMaxPerSource bounds concurrent requests from one source.
	DefaultMaxPerSource = 64
)

// bodyChunk is the unit bodies are buffered in: the size of [Buffers].
const bodyChunk = 32 << 10

// BodyConfig configures a [Bodies]. Zero fields take their defaults.
type BodyConfig struct {
	// Buffer is the size up to which a body with a declared length is
	// received whole before it is forwarded; a larger one is streamed
	// under the minimum rate. A chunked body (no declared length) is
	// always received whole, up to its limit, so that bad chunking found
	// late never leaves a partial request behind the proxy.
	Buffer int64
	// Budget bounds the bytes buffered by all requests of the process
	// together; past it a request is refused with 503 and Retry-After.
	Budget int64
	// MinRate (bytes per second) and Grace: a client must have sent n
	// bytes of its body by Grace + n/MinRate after the body began, or it is
	// refused with 408 (or, once streaming, cut off).
	MinRate int64
	Grace   time.Duration
}

func (c BodyConfig) withDefaults() BodyConfig {
	if c.Buffer <= 0 {
		c.Buffer = DefaultBodyBuffer
	}
	if c.Budget <= 0 {
		c.Budget = DefaultBodyBudget
	}
	if c.MinRate <= 0 {
		c.MinRate = DefaultMinBodyRate
	}
	if c.Grace <= 0 {
		c.Grace = DefaultBodyGrace
	}
	return c
}

// Bodies is the request-body machinery shared by the gateway and the
// sidecar: per-request size limits, buffering before forwarding, a minimum
// data rate, and one process-wide budget of buffered bytes (security
// invariant 9). One value serves a whole process.
type Bodies struct {
	cfg    BodyConfig
	budget Budget
}

// NewBodies returns the body machinery for cfg.
func NewBodies(cfg BodyConfig) *Bodies {
	cfg = cfg.withDefaults()
	return &Bodies{cfg: cfg, budget: Budget{max: cfg.Budget}}
}

// Config is the configuration in force, defaults applied.
func (b *Bodies) Config() BodyConfig { return b.cfg }

// Buffered reports the bytes buffered right now by the whole process.
func (b *Bodies) Buffered() int64 { return b.budget.used.Load() }

// BodyError says why a body was refused; Status is what the client gets.
type BodyError struct {
	Status int
	Reason string // a reason code, for records and the X-Ward-Deny-Reason header
	Err    error  // for the operator
}

func (e *BodyError) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *BodyError) Unwrap() error { return e.Err }

// Reason codes of body refusals.
const (
	ReasonBodyTooLarge  = "body_too_large"
	ReasonBodyTooSlow   = "body_too_slow"
	ReasonBodyBudget    = "body_budget_exhausted"
	ReasonBodyMalformed = "malformed_body"
)

// Prepare readies r's body to be forwarded under limit (bytes; 0: the
// default, negative: none). A declared length over limit is refused at
// once (413). A body of at most the buffer bound, and any chunked body,
// is received whole into pooled buffers charged to the process budget
// (503 past it), under the minimum rate (408), before Prepare returns; a
// larger declared body is streamed under the minimum rate and the limit.
// With stream set (gRPC and other HTTP/2 streams, which hold no upstream
// connection of their own) the body is passed on as it comes, under the
// limit only.
//
// On success r.Body is replaced and done must be called once the request
// has been forwarded (it returns the buffers; it is never nil). On error
// nothing was forwarded and the caller answers with the error's status.
func (b *Bodies) Prepare(w http.ResponseWriter, r *http.Request, limit int64, stream bool) (done func(), err *BodyError) {
	nop := func() {}
	if limit == 0 {
		limit = DefaultBodyLimit
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nop, nil
	}
	if limit > 0 && r.ContentLength > limit {
		return nop, &BodyError{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge,
			fmt.Errorf("Content-Length %d over the limit of %d", r.ContentLength, limit)}
	}
	body := r.Body
	if limit > 0 {
		body = http.MaxBytesReader(w, body, limit)
	}
	if stream {
		r.Body = body
		return nop, nil
	}
	rr := &rateReader{r: body, rc: http.NewResponseController(w), cfg: &b.cfg, start: time.Now()}
	if r.ContentLength > b.cfg.Buffer {
		r.Body = rr
		return nop, nil
	}
	buf := &bufferedBody{budget: &b.budget}
	if r.ContentLength > 0 {
		// Known length: reserve it all now, so that a refused request
		// reads nothing.
		if !buf.reserve(r.ContentLength) {
			return nop, budgetError()
		}
	}
	err = buf.fill(rr, r.ContentLength)
	if err != nil {
		buf.Close()
		return nop, err
	}
	r.Body = buf
	r.ContentLength = buf.size
	r.TransferEncoding = nil
	return func() { _ = buf.Close() }, nil
}

// Buffered returns the bytes of a body that Prepare received whole, in
// the buffers that hold them, without reading it: an inspection of the
// body before it is forwarded costs no copy and no second read. It
// reports false for any other body (streamed, or already read). The
// slices are valid until the request's done func runs.
func Buffered(body io.Reader) ([][]byte, bool) {
	b, ok := body.(*bufferedBody)
	if !ok {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.off != 0 {
		return nil, false
	}
	out := make([][]byte, 0, len(b.chunks))
	rest := b.size
	for _, c := range b.chunks {
		n := min(int64(len(c)), rest)
		out = append(out, c[:n])
		rest -= n
	}
	return out, true
}

func budgetError() *BodyError {
	return &BodyError{http.StatusServiceUnavailable, ReasonBodyBudget, errors.New("process body budget exhausted")}
}

// classify turns an error reading a body into a refusal.
func classify(err error) *BodyError {
	var mbe *http.MaxBytesError
	var fe *FramingError
	switch {
	case errors.As(err, &mbe):
		return &BodyError{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, err}
	case errors.Is(err, errTooSlow) || errors.Is(err, os.ErrDeadlineExceeded):
		return &BodyError{http.StatusRequestTimeout, ReasonBodyTooSlow, err}
	case errors.As(err, &fe):
		return &BodyError{fe.Status, ReasonBodyMalformed, err}
	default:
		return &BodyError{http.StatusBadRequest, ReasonBodyMalformed, err}
	}
}

var errTooSlow = errors.New("request body slower than the minimum rate")

// rateReader enforces the minimum rate with the connection's read
// deadline: before each read, the deadline is the time by which the body
// must have reached one byte more than it has. It lifts the deadline at
// the end of the body, and only there.
type rateReader struct {
	r     io.ReadCloser
	rc    *http.ResponseController
	cfg   *BodyConfig
	start time.Time
	n     int64
	off   bool // the connection cannot take deadlines: check between reads
}

func (rr *rateReader) due() time.Time {
	return rr.start.Add(rr.cfg.Grace + time.Duration(float64(rr.n+1)/float64(rr.cfg.MinRate)*float64(time.Second)))
}

func (rr *rateReader) Read(p []byte) (int, error) {
	due := rr.due()
	if !rr.off {
		if err := rr.rc.SetReadDeadline(due); err != nil {
			rr.off = true
		}
	}
	n, err := rr.r.Read(p)
	rr.n += int64(n)
	if err == nil && rr.off && time.Now().After(due) {
		err = errTooSlow
	}
	if err == io.EOF {
		rr.finish()
	}
	// On any other error the deadline stays: whatever reads the rest of
	// the body (net/http draining it) fails at once instead of waiting.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errTooSlow
	}
	return n, err
}

// finish lifts the deadline once the body was read.
func (rr *rateReader) finish() {
	if !rr.off {
		_ = rr.rc.SetReadDeadline(time.Time{})
	}
}

func (rr *rateReader) Close() error { return rr.r.Close() }

// bufferedBody is a body received whole, in pooled chunks charged to the
// budget. Close returns the chunks; reads after it fail.
type bufferedBody struct {
	mu       sync.Mutex
	budget   *Budget
	chunks   [][]byte
	size     int64 // bytes held
	reserved int64 // bytes charged to the budget
	off      int64 // read position
	closed   bool
}

// reserve charges n more bytes, rounded up to whole chunks, to the budget.
func (b *bufferedBody) reserve(n int64) bool {
	n = (n + bodyChunk - 1) / bodyChunk * bodyChunk
	if !b.budget.TryAcquire(n) {
		return false
	}
	b.reserved += n
	return true
}

// fill reads r to its end, or to expect bytes when expect is not -1.
func (b *bufferedBody) fill(r *rateReader, expect int64) *BodyError {
	for {
		if b.size == expect {
			r.finish() // the body reader may not have said EOF yet
			return nil
		}
		i := int(b.size % bodyChunk)
		if i == 0 {
			if b.size+bodyChunk > b.reserved && !b.reserve(bodyChunk) {
				return budgetError()
			}
			b.chunks = append(b.chunks, Buffers.Get())
		}
		n, err := r.Read(b.chunks[len(b.chunks)-1][i:])
		b.size += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return classify(err)
		}
	}
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errors.New("read of a closed body")
	}
	if b.off >= b.size {
		return 0, io.EOF
	}
	c := b.chunks[b.off/bodyChunk][b.off%bodyChunk:]
	if rest := b.size - b.off; int64(len(c)) > rest {
		c = c[:rest]
	}
	n := copy(p, c)
	b.off += int64(n)
	return n, nil
}

// Close returns the buffers to the pool and the bytes to the budget; it
// may be called more than once, from the forwarding transport and from
// the handler.
func (b *bufferedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, c := range b.chunks {
		Buffers.Put(c)
	}
	b.chunks = nil
	b.budget.Release(b.reserved)
	b.reserved = 0
	return nil
}

// Budget is a count of bytes with a ceiling, taken without waiting.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// TryAcquire takes n bytes if they fit, and reports whether they did.
func (b *Budget) TryAcquire(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Release gives back n bytes taken before.
func (b *Budget) Release(n int64) { b.used.Add(-n) }

// IsGRPC reports a gRPC request: HTTP/2 with a gRPC content type. Its body
// is a stream, passed as it comes.
func IsGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && GRPCContentType(r.Header.Get("Content-Type"))
}

// GRPCContentType reports a gRPC content type (application/grpc, +proto,
// +json, with parameters): gRPC needs HTTP/2 and its trailers whatever the
// caller spoke.
func GRPCContentType(ct string) bool {
	rest, ok := strings.CutPrefix(strings.ToLower(ct), "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}
