package demo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/wardsec/ward/internal/proxy"
)

// app is one of the demo's sample services, a plain HTTP handler on
// loopback that only its sidecar talks to.
type app struct {
	ln  net.Listener
	srv *http.Server
}

func newApp(h http.Handler) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &app{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}, nil
}

func (a *app) addr() string { return a.ln.Addr().String() }

// Run serves until ctx ends.
func (a *app) Run(ctx context.Context) error { return proxy.Serve(ctx, a.srv, a.ln) }

// caller is who the sidecar says the request comes from: the user and
// application the gateway vouched for, or the calling workload.
type caller struct {
	User string `json:"user,omitempty"`
	App  string `json:"app,omitempty"`
	Peer string `json:"peer,omitempty"`
}

func callerOf(r *http.Request) caller {
	return caller{User: r.Header.Get("X-Ward-User"), App: r.Header.Get("X-Ward-App"), Peer: r.Header.Get("X-Ward-Peer-Id")}
}

type item struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Price string `json:"price"`
}

// catalogHandler lists what the shop sells and who asked.
func catalogHandler() http.Handler {
	items := []item{{"tea-01", "green tea, 100 g", "4.50"}, {"cup-02", "tea cup", "7.00"}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Items  []item `json:"items"`
			Caller caller `json:"caller"`
		}{items, callerOf(r)})
	})
}

// ordersHandler returns the order named in the path. Like an app that
// `ward run --secret DB_PASSWORD=db/orders/password` starts, it needs its
// database password and does not start without it; it tells its callers
// that it has one, never what it is.
func ordersHandler(dbPassword []byte, instance string) (http.Handler, error) {
	if len(dbPassword) == 0 {
		return nil, errors.New("orders: no database password (" + envDBPassword + ")")
	}
	mux := http.NewServeMux()
	// What catalog may read of orders (its policy rule): stock levels.
	mux.HandleFunc("GET /stock", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"tea-01": 12, "cup-02": 3})
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			ID         string   `json:"id"`
			Instance   string   `json:"instance"` // which instance of orders answered
			Items      []string `json:"items"`
			Total      string   `json:"total"`
			Status     string   `json:"status"`
			DBPassword string   `json:"db_password"`
			Caller     caller   `json:"caller"`
		}{r.PathValue("id"), instance, []string{"tea-01", "cup-02"}, "11.50", "shipped", "set", callerOf(r)})
	})
	return mux, nil
}
