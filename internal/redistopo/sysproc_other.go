//go:build !linux

package redistopo

import "syscall"

// sysProcAttr puts a server in a process group of its own (Kill and Pause
// signal the group, which includes a server's forked children). Only Linux
// has Pdeathsig: elsewhere a server outlives a test binary killed before its
// cleanup ran.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
