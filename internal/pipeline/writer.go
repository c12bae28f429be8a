package pipeline

import "net/http"

// Writer records the status and size of a response. OnHeader, when set,
// runs once just before the response head is written (a gateway adds its
// security headers there), whether the app or Ward answers.
type Writer struct {
	http.ResponseWriter
	Status   int
	Bytes    int64
	OnHeader func(http.Header)
}

// WriteHeader implements http.ResponseWriter. Informational (1xx) heads
// pass through without fixing the status.
func (w *Writer) WriteHeader(code int) {
	if w.Status == 0 && code >= 200 {
		w.Status = code
		if w.OnHeader != nil {
			w.OnHeader(w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *Writer) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data; streaming responses (gRPC, event streams)
// need it through the wrapper.
func (w *Writer) Flush() {
	if w.Status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}
