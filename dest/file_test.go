package dest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file destination follows logrotate: once the file is moved or deleted,
// the next write (after the once-a-second check) goes to a new file.
func TestFileReopensAfterRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.log")
	c, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	write := func(s string) {
		t.Helper()
		c.checked = time.Time{} // the check is due
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("a 1 1\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write("b 1 1\n")
	os.Remove(path)
	write("c 1 1\n")
	write("d 1 1\n")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "a 1 1\n" || string(cur) != "c 1 1\nd 1 1\n" {
		t.Fatalf("rotated %q, current %q", old, cur)
	}
	if _, err := openFile(filepath.Join(path, "no", "dir")); err == nil {
		t.Fatal("a file in a missing directory opened")
	}
}
