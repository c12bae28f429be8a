package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestFullDiskUnderSidecarLog (issue 13): orders' sidecar keeps its audit
// spool on a small tmpfs. Once the file system is full, every call is
// refused 503 audit_unavailable within its deadline and the app sees
// nothing; once space is freed, calls are served and recorded again
// without a restart.
func TestFullDiskUnderSidecarLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (CI does)")
	}
	spool := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", spool).Run() })

	var served atomic.Int64
	m := startMeshPairWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "ok")
	}), "--audit-dir", spool)
	// catalog's own sidecar would open its breaker on the refusals: call
	// orders' sidecar directly with catalog's identity.
	cert, err := tls.LoadX509KeyPair(filepath.Join(m.dir, "catalog", "svid.pem"), filepath.Join(m.dir, "catalog", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}} //nolint:gosec // the test checks the refusal, not the server's identity
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	call := func() (int, string, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest("GET", "https://"+m.ordersIn+"/orders/1", nil)
		req.Host = "orders"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"), time.Since(start)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if status, _, _ := call(); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mesh never served a call")
		}
	}

	// Fill the file system.
	filler := filepath.Join(spool, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	_ = f.Sync()
	f.Close()

	before := served.Load()
	refused := 0
	for i := range 20 {
		status, reason, took := call()
		if status == http.StatusOK {
			// A record may still fit in the last partial page.
			if i > 5 {
				t.Fatalf("call %d on a full disk was served", i)
			}
			before = served.Load()
			continue
		}
		if status != http.StatusServiceUnavailable || reason != "audit_unavailable" || took > 3*time.Second {
			t.Fatalf("call %d on a full disk: %d %q after %v, want 503 audit_unavailable at once", i, status, reason, took)
		}
		refused++
	}
	if refused < 14 || served.Load() != before {
		t.Fatalf("full disk: %d of 20 refused, the app saw %d requests it should not have", refused, served.Load()-before)
	}

	// Space again: calls are served (and recorded) without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, _, _ := call()
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the disk freed up: still %d", status)
		}
	}
	out, err := ward(t, m.dir, "audit", "verify", "--dir", spool)
	if err != nil || !strings.Contains(strings.ToLower(out), "ok") {
		t.Fatalf("the spool does not verify after the full disk: %v\n%s", err, out)
	}
}
