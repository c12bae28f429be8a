package proxy

import (
	"net/url"
	"strings"
)

// SetPath makes u carry the canonical path policy decided on (see
// policy.NormalizePath), so that the next hop receives exactly it: Path
// holds it decoded and RawPath encoded as it is, the way net/url keeps a
// path whose encoding is not its default one. Storing the encoded form as
// Path would encode it a second time ("/a%20b" sent as "/a%2520b").
func SetPath(u *url.URL, canonical string) {
	dec, err := url.PathUnescape(canonical)
	if err != nil { // not canonical: leave it to net/url to encode
		u.Path, u.RawPath = canonical, ""
		return
	}
	u.Path, u.RawPath = dec, ""
	if strings.IndexByte(canonical, '%') >= 0 {
		u.RawPath = canonical
	}
}
