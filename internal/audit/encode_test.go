package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzAppendEvent holds the hand-written encoder byte-for-byte equal to
// encoding/json, which the stored format and the query prefilter rely on.
func FuzzAppendEvent(f *testing.F) {
	f.Add("gateway.request", "spiffe://example.org/svc/a", "<script>&\"\\\n\t\b\f\x00\x7f", "k", "\u2028\u2029\xff\xfeé", int64(1767225600123456789))
	f.Add("", "", "", "", "", int64(0))
	f.Fuzz(func(t *testing.T, typ, actor, reason, key, val string, nanos int64) {
		e := Event{Time: time.Unix(0, nanos), Type: typ, Actor: actor, Reason: reason, User: val, Service: key, RequestID: reason + actor}
		if key != "" || val != "" {
			e.Fields = map[string]string{key: val, val + "x": key}
		}
		want, werr := json.Marshal(toWire(e))
		got, gerr := appendEvent(nil, &e)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("errors differ: json %v, appendEvent %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendEvent\n%s\njson.Marshal\n%s", got, want)
		}
	})
}
