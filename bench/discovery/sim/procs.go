package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procTicks returns utime+stime of pid in clock ticks, cutime+cstime
// (its children that exited and were waited for) and its parent's PID,
// from /proc/PID/stat.
func procTicks(pid int) (ticks, reaped float64, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	var v [4]float64
	for j := range v {
		v[j], _ = strconv.ParseFloat(f[11+j], 64)
	}
	return v[0] + v[1], v[2] + v[3], ppid, true
}

type cpuSample struct {
	ward []float64 // ticks, by -pids
	pg   float64   // ticks of the postmaster and its children, live or exited
}

func sampleCPU(pids []int, pgPID int) cpuSample {
	var s cpuSample
	for _, pid := range pids {
		t, _, _, _ := procTicks(pid)
		s.ward = append(s.ward, t)
	}
	if pgPID == 0 {
		return s
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		t, reaped, ppid, ok := procTicks(pid)
		switch {
		case !ok:
		case pid == pgPID:
			// Backends that ended (closed connections) count through
			// the postmaster's reaped children.
			s.pg += t + reaped
		case ppid == pgPID:
			s.pg += t
		}
	}
	return s
}

// statusKB reads a "Key:   N kB" line of /proc/PID/status.
func statusKB(pid int, key string) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return n
		}
	}
	return 0
}

// startRSS samples the resident set of pids every 250 ms until the
// returned function is called, which returns each one's maximum in MiB.
func startRSS(ctx context.Context, pids []int) func() []float64 {
	ctx, cancel := context.WithCancel(ctx)
	maxKB := make([]float64, len(pids))
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			mu.Lock()
			for i, pid := range pids {
				maxKB[i] = max(maxKB[i], statusKB(pid, "VmRSS"))
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() []float64 {
		cancel()
		<-done
		out := make([]float64, len(pids))
		for i := range maxKB {
			out[i] = maxKB[i] / 1024
		}
		return out
	}
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
