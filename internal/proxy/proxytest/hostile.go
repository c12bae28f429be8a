// Package proxytest holds what the tests of Ward's proxies share: the table
// of hostile requests that every way in (HTTP/1.1 and HTTP/2, gateway and
// sidecar) must refuse alike.
package proxytest

import (
	"net/http"
	"strings"
)

// Hostile is one request that request hygiene must refuse before any
// route, authentication or policy runs.
type Hostile struct {
	Name   string
	Header [][2]string // extra header fields, in order, spelled as sent
	Path   string      // appended to an allowed path prefix; "" for none
	Status int         // what the proxy must answer
}

// HostileRequests is the table. Each proxy runs it over HTTP/1.1 and over
// HTTP/2 against a path that is otherwise allowed.
func HostileRequests() []Hostile {
	many := make([][2]string, 150)
	for i := range many {
		many[i] = [2]string{"X-Filler", "x"}
	}
	return []Hostile{
		{Name: "underscore alias of a Ward header", Header: [][2]string{{"x_ward_user", "admin"}}, Status: http.StatusBadRequest},
		{Name: "mixed-case underscore alias", Header: [][2]string{{"X_Ward_Peer_Id", "spiffe://example.org/svc/admin"}}, Status: http.StatusBadRequest},
		{Name: "half underscore alias", Header: [][2]string{{"x-ward_identity", "forged"}}, Status: http.StatusBadRequest},
		{Name: "underscore in any header", Header: [][2]string{{"x_forwarded_for", "10.0.0.1"}}, Status: http.StatusBadRequest},
		{Name: "too many header fields", Header: many, Status: http.StatusRequestHeaderFieldsTooLarge},
		{Name: "request target too long", Path: strings.Repeat("a", 9000), Status: http.StatusRequestURITooLong},
	}
}

// Forged spells X-Ward-User, a header Ward sets for the app, in ways a
// client might try without an underscore: the proxy must strip each one
// before anything (a condition, the app) reads the headers.
var Forged = [][2]string{
	{"X-Ward-User", "admin"},
	{"x-ward-user", "admin"},
	{"X-WARD-USER", "admin"},
	{"x-WaRd-UsEr", "admin"},
}
