package main

import (
	"context"
	"io"
)

func cmdEnroll(ctx context.Context, args []string, stdout io.Writer) error {
	return &usageError{"enroll: not built yet"}
}
