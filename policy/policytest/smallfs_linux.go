package policytest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of size bytes on a new temporary directory and
// returns it; the test's cleanup unmounts it. Tests of a full disk use it:
// fill it, write, free space, write again. It needs root: without root the
// test is skipped; as root a failing mount fails the test under
// GATEHOUSE_REQUIRE_INTEROP=1 (RequireInterop), and skips it otherwise.
func SmallFS(t testing.TB, size int) string {
	t.Helper()
	RequireInterop(t, os.Geteuid() == 0, "mounting a small tmpfs needs root")
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+strconv.Itoa(size)+",mode=0700")
	RequireInterop(t, err == nil, fmt.Sprintf("mount tmpfs: %v", err))
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file named name in dir until the file system is full and
// returns its path; removing it frees the space.
func Fill(t testing.TB, dir, name string) string {
	t.Helper()
	path := dir + "/" + name
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// Take the last bytes too, so that even a short line cannot fit.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	return path
}
