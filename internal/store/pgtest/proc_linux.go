package pgtest

import "syscall"

// sysProcAttr runs a command as cred (nil: as this process) and kills it
// with SIGQUIT (PostgreSQL's immediate shutdown) if the test binary dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
