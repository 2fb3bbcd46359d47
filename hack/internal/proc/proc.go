// Package proc reads what the load tools report of processes from /proc (Linux only).
package proc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is the user+system CPU process pid has used, all its threads; 0 when it cannot be read.
func CPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}
