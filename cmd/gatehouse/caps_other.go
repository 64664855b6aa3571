//go:build !linux

package main

import "errors"

// effectiveCap is unknown outside Linux.
func effectiveCap(uint) (bool, error) { return false, errors.New("capabilities: not Linux") }
