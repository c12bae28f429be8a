package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEvent appends e in its stored form: the bytes json.Marshal makes
// of wireEvent (a test holds the two equal), without reflection, because
// every audited request pays for it.
func appendEvent(buf []byte, e *Event) ([]byte, error) {
	t := e.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		b, err := json.Marshal(toWire(*e)) // reports the error json does
		return append(buf, b...), err
	}
	buf = append(buf, `{"time":"`...)
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","type":`...)
	buf = appendJSONString(buf, e.Type)
	for _, f := range [...]struct {
		key string
		v   string
	}{
		{`,"actor":`, e.Actor}, {`,"subject":`, e.Subject}, {`,"decision":`, e.Decision}, {`,"reason":`, e.Reason},
		{`,"source":`, e.Source}, {`,"service":`, e.Service}, {`,"user":`, e.User}, {`,"app":`, e.App},
		{`,"request_id":`, e.RequestID}, {`,"trace_id":`, e.TraceID}, {`,"result":`, e.Result},
	} {
		if f.v != "" {
			buf = append(buf, f.key...)
			buf = appendJSONString(buf, f.v)
		}
	}
	return append(appendFields(buf, e), '}'), nil
}

// httpMember is one member of HTTP with its stored key.
type httpMember struct {
	key string
	s   string
	n   int64
	num bool
}

func (m *httpMember) set() bool {
	if m.num {
		return m.n != 0
	}
	return m.s != ""
}

// members lists h's members in the order of their keys.
func (h *HTTP) members() [22]httpMember {
	dry := ""
	if h.DryRun {
		dry = "true"
	}
	return [...]httpMember{
		{key: "anonymous_id", s: h.AnonymousID},
		{key: "bytes_in", n: h.BytesIn, num: true},
		{key: "bytes_out", n: h.BytesOut, num: true},
		{key: "dry_run", s: dry},
		{key: "error", s: h.Error},
		{key: "host", s: h.Host},
		{key: "key_prefix", s: h.KeyPrefix},
		{key: "latency_us", n: h.LatencyUS, num: true},
		{key: "message", s: h.Message},
		{key: "method", s: h.Method},
		{key: "path", s: h.Path},
		{key: "peer", s: h.Peer},
		{key: "policy", s: h.Policy},
		{key: "proto", s: h.Proto},
		{key: "request_id", s: h.RequestID},
		{key: "route", s: h.Route},
		{key: "status", n: int64(h.Status), num: true},
		{key: "user_issuer", s: h.UserIssuer},
		{key: "waf", s: h.WAF},
		{key: "waf_location", s: h.WAFLocation},
		{key: "waf_rules", s: h.WAFRules},
		{key: "waf_score", n: h.WAFScore, num: true},
	}
}

// each calls f with each set member in key order until f returns false.
func (h *HTTP) each(f func(key, s string, n int64, num bool) bool) {
	ms := h.members()
	for i := range ms {
		if m := &ms[i]; m.set() && !f(m.key, m.s, m.n, m.num) {
			return
		}
	}
}

// appendFields appends the "fields" member of e, if it has any: the set
// HTTP members and Fields merged in key order (a member hides the Fields
// entry of its name), as encoding/json writes a map.
func appendFields(buf []byte, e *Event) []byte {
	ms := e.HTTP.members()
	var keys []string
	if len(e.Fields) > 0 {
		keys = make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	n := 0
	open := func(buf []byte, key string) []byte {
		if n == 0 {
			buf = append(buf, `,"fields":{`...)
		} else {
			buf = append(buf, ',')
		}
		n++
		buf = appendJSONString(buf, key)
		return append(buf, ':')
	}
	i, j := 0, 0
	for i < len(ms) || j < len(keys) {
		if i < len(ms) && !ms[i].set() {
			i++
			continue
		}
		if i < len(ms) && (j == len(keys) || ms[i].key <= keys[j]) {
			m := &ms[i]
			if j < len(keys) && m.key == keys[j] {
				j++ // the member wins
			}
			buf = open(buf, m.key)
			if m.num {
				buf = append(buf, '"')
				buf = strconv.AppendInt(buf, m.n, 10)
				buf = append(buf, '"')
			} else {
				buf = appendJSONString(buf, m.s)
			}
			i++
			continue
		}
		buf = open(buf, keys[j])
		buf = appendJSONString(buf, e.Fields[keys[j]])
		j++
	}
	if n > 0 {
		buf = append(buf, '}')
	}
	return buf
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does (HTML-safe escaping,
// invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped).
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\\', '"':
				buf = append(buf, '\\', b)
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
