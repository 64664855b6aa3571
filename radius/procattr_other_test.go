//go:build !linux

package radius

import "os/exec"

func dieWithTest(*exec.Cmd) {}
