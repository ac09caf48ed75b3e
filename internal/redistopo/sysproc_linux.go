package redistopo

import "syscall"

// sysProcAttr puts a server in a process group of its own (Kill and Pause
// signal the group, which includes a server's forked children), and has the
// kernel SIGKILL it when the thread that started it ends, which launch
// arranges to be when the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
