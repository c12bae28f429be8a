package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const grpcYAML = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: grpc, endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: intruder}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [svc/catalog]
      methods: [POST]
      paths: ["/grpc.health.v1.Health/Check"]
`

// TestGRPC: a gRPC call goes app -> local upstream listener (h2c) ->
// mTLS HTTP/2 -> sidecar -> gRPC server (h2c), with the same identity
// checks: another caller gets PermissionDenied and the server sees nothing.
func TestGRPC(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr, intruderAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	m.writeConfig(fmt.Sprintf(grpcYAML, ordersAddr, catalogAddr, intruderAddr))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls++
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()

	m.sidecar("orders", ordersAddr, &recorder{addr: l.Addr().String()}, nil)
	catalogUp, intruderUp := freeAddr(t), freeAddr(t)
	m.sidecar("catalog", catalogAddr, newRecorder(t, nil), map[string]string{"orders": catalogUp})
	m.sidecar("intruder", intruderAddr, newRecorder(t, nil), map[string]string{"orders": intruderUp})

	check := func(addr string) (*healthpb.HealthCheckResponse, error) {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	}
	resp, err := check(catalogUp)
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("allowed gRPC call: %v %v", resp, err)
	}
	if calls != 1 {
		t.Fatalf("server saw %d calls", calls)
	}
	_, err = check(intruderUp)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unauthorized gRPC call: %v", err)
	}
	if calls != 1 {
		t.Fatal("the gRPC server saw an unauthorized call")
	}
}

// TestWebSocket: an Upgrade passes through both sidecars; afterwards bytes
// flow both ways.
func TestWebSocket(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	app := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Peer: %s\r\n\r\n", r.Header.Get("X-Ward-Peer-Id"))
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		fmt.Fprintf(rw, "echo %s", line)
		_ = rw.Flush()
	})
	m.sidecar("orders", ordersAddr, app, nil)
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)

	c, err := net.Dial("tcp", catalog.sc.OutboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET http://orders/orders/ws HTTP/1.1\r\nHost: orders\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Peer") != "spiffe://example.org/svc/catalog" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	fmt.Fprintf(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("after upgrade: %q %v", line, err)
	}
}

// TestConfigReload: a valid change applies within seconds; an invalid file
// is refused and the running policy keeps working.
func TestConfigReload(t *testing.T) {
	ts := startTwo(t)
	c := ts.catalog.outbound()
	ordersAddr, catalogAddr := ts.orders.sc.InboundAddr(), ts.catalog.sc.InboundAddr()
	if status, _, _ := get(t, c, "POST", "http://orders/orders/1", nil); status != 403 {
		t.Fatalf("before: %d", status)
	}
	ts.m.writeConfig("apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [1, 2]\n")
	time.Sleep(2500 * time.Millisecond)
	if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != 200 {
		t.Fatalf("invalid file broke the running configuration: %d", status)
	}
	ts.m.writeConfig(strings.Replace(meshYAML(ordersAddr, catalogAddr), "methods: [GET]", "methods: [GET, POST]", 1))
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _, _ := get(t, c, "POST", "http://orders/orders/1", nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("valid change not applied: %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
