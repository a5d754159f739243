package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Readers of Linux /proc, for benchmarks that account a child process's
// memory and CPU as its own. They fail on systems without /proc.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports (the kernel fixes it for the
// user ABI whatever CONFIG_HZ is), so it is not queried with sysconf (cgo).
const clockTicks = 100

// ProcMemory is a process's resident memory from /proc/<pid>/status.
type ProcMemory struct {
	// RSS is VmRSS, the resident set now, in bytes.
	RSS uint64
	// HWM is VmHWM, the peak resident set since the process started, in bytes.
	HWM uint64
}

// ReadProcMemory reads VmRSS and VmHWM of pid.
func ReadProcMemory(pid int) (ProcMemory, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return ProcMemory{}, err
	}
	var m ProcMemory
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(value) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return ProcMemory{}, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, name, value)
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return ProcMemory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			m.RSS = kb * 1024
		} else {
			m.HWM = kb * 1024
		}
		seen++
	}
	if seen != 2 {
		return ProcMemory{}, fmt.Errorf("/proc/%d/status: VmRSS or VmHWM missing (kernel thread or zombie?)", pid)
	}
	return m, nil
}

// ProcStat is what the benchmarks need from /proc/<pid>/stat.
type ProcStat struct {
	Pid  int
	PPid int
	// Comm is the executable name as the kernel keeps it (at most 15 bytes).
	Comm string
	// CPU is user plus system time consumed so far (utime + stime).
	CPU time.Duration
}

// ReadProcStat reads pid's parent, name and CPU time.
func ReadProcStat(pid int) (ProcStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	return parseProcStat(pid, data)
}

func parseProcStat(pid int, data []byte) (ProcStat, error) {
	// "pid (comm) state ppid ...": comm may contain spaces and parentheses,
	// so fields are counted from the last ')'.
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(s[closing+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, err1 := strconv.Atoi(fields[1])
	utime, err2 := strconv.ParseInt(fields[11], 10, 64)
	stime, err3 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: unexpected field values", pid)
	}
	ticks := utime + stime
	return ProcStat{
		Pid:  pid,
		PPid: ppid,
		Comm: s[open+1 : closing],
		CPU:  time.Duration(ticks) * time.Second / clockTicks,
	}, nil
}

// ChildProcesses returns the live processes whose parent is ppid.
func ChildProcesses(ppid int) ([]ProcStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []ProcStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadProcStat(pid)
		if err != nil {
			continue // exited meanwhile, or not readable
		}
		if st.PPid == ppid {
			out = append(out, st)
		}
	}
	return out, nil
}

// LoadAverage returns the 1, 5 and 15 minute load averages from /proc/loadavg.
func LoadAverage() ([3]float64, error) {
	var la [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return la, fmt.Errorf("/proc/loadavg: unexpected format")
	}
	for i := range la {
		if la[i], err = strconv.ParseFloat(fields[i], 64); err != nil {
			return la, fmt.Errorf("/proc/loadavg: %w", err)
		}
	}
	return la, nil
}
