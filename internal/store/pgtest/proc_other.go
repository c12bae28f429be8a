//go:build unix && !linux

package pgtest

import "syscall"

// sysProcAttr runs a command as cred (nil: as this process). Without a
// parent-death signal, a server outlives a test binary that dies before Stop.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
