package main

import (
	"context"
	"io"
)

func cmdBench(ctx context.Context, args []string, stdout io.Writer) error {
	return &usageError{"bench: not built yet"}
}
