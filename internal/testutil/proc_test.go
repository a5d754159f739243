package testutil

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// comm with a space and a parenthesis, as the kernel allows.
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 12 0 98765 123456789 4567 18446744073709551615\n"
	st, err := parseProcStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != 17 || st.Comm != "my (odd) proc" || st.CPU != 3800*time.Millisecond {
		t.Fatalf("got %+v, want ppid 17, comm %q, CPU 3.8s", st, "my (odd) proc")
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2 3", "1 (x) S z 1 1 0 -1 0 0 0 0 0 a b"} {
		if _, err := parseProcStat(1, []byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestProcReadersOnSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux only")
	}
	m, err := ReadProcMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.HWM < m.RSS {
		t.Fatalf("implausible memory %+v", m)
	}
	st, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != os.Getppid() {
		t.Fatalf("ppid %d, want %d", st.PPid, os.Getppid())
	}
	children, err := ChildProcesses(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range children {
		found = found || c.Pid == os.Getpid()
	}
	if !found {
		t.Fatal("this process is not among its parent's children")
	}
	if _, err := LoadAverage(); err != nil {
		t.Fatal(err)
	}
}
