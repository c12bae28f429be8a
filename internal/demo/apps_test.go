package demo

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOrdersAppNeedsItsDatabasePassword (issue 16 item 4): like an app
// that ward run starts, the orders app does not start without its
// database password, and with it says only that it has one.
func TestOrdersAppNeedsItsDatabasePassword(t *testing.T) {
	for _, pw := range [][]byte{nil, {}} {
		if h, err := ordersHandler(pw, "orders-1"); err == nil || h != nil || !strings.Contains(err.Error(), envDBPassword) {
			t.Errorf("orders started with password %q: %v", pw, err)
		}
	}
	const pw = "Zq8-orders-db-password-value"
	h, err := ordersHandler([]byte(pw), "orders-1")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders/1", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, `"db_password":"set"`) || strings.Contains(body, pw) {
		t.Errorf("GET /orders/1: %d %s", rec.Code, body)
	}
}
