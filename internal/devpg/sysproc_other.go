//go:build !linux

package devpg

import "syscall"

// sysProcAttr runs a child as cred's account (nil: as this process), in a
// process group of its own (a terminal's Ctrl-C goes to this process, which
// stops the server after it is done with it). Only
// Linux has Pdeathsig: elsewhere a server outlives a parent killed with
// SIGKILL (Stop still stops it), and the next Start reports it running.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
