package devpg

import "syscall"

// sysProcAttr runs a child as cred's account (nil: as this process), in a
// process group of its own (a terminal's Ctrl-C goes to this process, which
// stops the server after it is done with it), and has the kernel SIGKILL it
// when the thread that started it ends, which Start arranges to be when this
// process dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
