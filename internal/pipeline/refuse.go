package pipeline

import (
	"net/http"
	"strconv"
	"strings"
)

// HeaderDenyReason carries the reason code of every refusal, so that a
// client (and a gateway in front of a sidecar) can tell Ward's refusal
// from the app's answer.
const HeaderDenyReason = "X-Ward-Deny-Reason"

// HeaderRequestID joins a gateway's record to the sidecar's, and a
// client's report to both.
const HeaderRequestID = "X-Ward-Request-Id"

// statusText is the "error" member of a refusal, per status, built once.
var statusText = func() map[int]string {
	m := map[int]string{}
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = strings.ToLower(t)
		}
	}
	return m
}()

// Render answers a refused request: the reason's status, its challenge,
// Retry-After on 429 and 503, and the same JSON body from every role:
//
//	{"error":"forbidden","reason":"no_rule_matches","request_id":"..."}
//
// Only the registered code reaches the client; what the operator needs
// (the detail) goes to the record.
func Render(w http.ResponseWriter, reason Reason, requestID string) {
	h := w.Header()
	h.Set(HeaderDenyReason, reason.Code)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if reason.Challenge != "" {
		h.Set("WWW-Authenticate", reason.Challenge)
	}
	if reason.Status == http.StatusServiceUnavailable || reason.Status == http.StatusTooManyRequests {
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", "1")
		}
	}
	b := make([]byte, 0, 96+len(reason.Code)+len(requestID))
	b = AppendBody(b, reason, requestID)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(reason.Status)
	_, _ = w.Write(b)
}

// AppendBody appends the JSON body of a refusal. Codes and request ids are
// Ward's own (letters, digits, '_' and '-'), so they need no escaping;
// anything else is replaced, never echoed.
func AppendBody(b []byte, reason Reason, requestID string) []byte {
	text, ok := statusText[reason.Status]
	if !ok {
		text = "error"
	}
	b = append(b, `{"error":"`...)
	b = append(b, text...)
	b = append(b, `","reason":"`...)
	b = appendSafe(b, reason.Code)
	b = append(b, `","request_id":"`...)
	b = appendSafe(b, requestID)
	return append(b, "\"}\n"...)
}

func appendSafe(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return b
}
