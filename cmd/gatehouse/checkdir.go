package main

import (
	"context"
	"log/slog"
)

// checkDirectoryGroups connects and binds to the directory (check
// --directory).
func checkDirectoryGroups(ctx context.Context, l *loaded, sample string, rep *checkDirectory) error {
	dir, err := openDirectory(ctx, l, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	defer dir.close()
	return dir.check(ctx)
}
