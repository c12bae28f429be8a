package audit

import (
	"encoding/json"
	"slices"
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
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = append(buf, `,"fields":{`...)
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			buf = appendJSONString(buf, e.Fields[k])
		}
		buf = append(buf, '}')
	}
	return append(buf, '}'), nil
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
