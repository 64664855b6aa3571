package radius

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes a helper daemon (radsecproxy) get SIGKILL when the test
// process dies without running its cleanups (killed, SIGPIPE).
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
