//go:build !linux

package main

import "errors"

// monotonicUsec: systemd runs on Linux only.
func monotonicUsec() (int64, error) { return 0, errors.New("no systemd outside Linux") }
