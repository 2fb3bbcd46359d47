package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startProcess starts path with args in its own session, logging to logFile, and returns at once: the
// process outlives this command and is stopped later by PID with stopProcess.
func startProcess(name, path string, args []string, logFile string) (*Process, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s binary is missing at %s: run `make control-plane build` first", name, path)
	}
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = out.Close() }()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("could not start %s: %w", name, err)
	}
	p := &Process{Name: name, PID: cmd.Process.Pid, Path: path, Args: args, Log: logFile, exited: make(chan struct{})}
	// Reap the child if it exits while this command still runs, and keep why.
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// ours reports whether pid still runs the binary we started, so a recycled PID is never signalled.
func (p *Process) ours() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if string(argv0) != p.Path {
		return false
	}
	return alive(p.PID)
}

// alive reports whether pid exists and has not exited. Unlike ours it does not read the command line,
// which is briefly empty while a process execs or exits.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !isZombie(stat)
}

func isZombie(stat []byte) bool {
	// /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// stopProcess sends SIGTERM, waits up to grace, then SIGKILL. It only signals a process that is ours.
func stopProcess(p *Process, grace time.Duration) {
	if !p.ours() {
		return
	}
	// From here on, wait on the PID alone: it was verified as ours just above.
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(p.PID) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	for i := 0; i < 50 && alive(p.PID); i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// checkPortsFree fails with a clear message naming the first port already in use.
func checkPortsFree(ports map[int]string) error {
	for port, what := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("port %d (%s) is already in use: stop what uses it, run `hack/clusters.sh down`, or set CLUSTERS_PORT_OFFSET", port, what)
		}
		_ = l.Close()
	}
	return nil
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitUntil polls check until it succeeds, the process dies, or timeout passes.
func waitUntil(p *Process, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = check(); last == nil {
			return nil
		}
		if p != nil && p.exited != nil {
			select {
			case <-p.exited:
				return fmt.Errorf("%s (pid %d) exited (%w) while waiting for %s; last log lines:\n%s", p.Name, p.PID, p.waitErr, what, tail(p.Log, 15))
			default:
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("timed out")
	}
	return fmt.Errorf("%s not reached within %s: %w", what, timeout, last)
}
