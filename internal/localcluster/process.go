package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one running component of a local cluster.
type Process struct {
	Name   string   `json:"name"`
	PID    int      `json:"pid"`
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	Log    string   `json:"log"`
}

// start launches a component with its output in dir/logs/NAME.log. When
// attached, the component is killed if this process dies (test clusters);
// otherwise it runs in a session of its own and outlives the command.
func start(dir, name, binary string, args []string, attached bool) (Process, error) {
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return Process{}, fmt.Errorf("creating %s: %w", logDir, err)
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Process{}, fmt.Errorf("opening %s: %w", logPath, err)
	}
	defer func() { _ = logFile.Close() }()

	cmd := exec.Command(binary, args...) //nolint:gosec // binaries are resolved by hitless itself
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = componentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if attached {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("starting %s: %w", name, err)
	}
	p := Process{Name: name, PID: cmd.Process.Pid, Binary: binary, Args: args, Log: logPath}
	// Reap the child when it exits so it never lingers as a zombie of a
	// long-lived parent (a test binary); a detached command exits first and
	// leaves reaping to init.
	go func() { _ = cmd.Wait() }()
	return p, nil
}

// componentEnv keeps the environment minimal so a user's KUBECONFIG or proxy
// settings cannot redirect a component.
func componentEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if v := os.Getenv("TMPDIR"); v != "" {
		env = append(env, "TMPDIR="+v)
	}
	// hitless's own settings (HITLESS_HOME, HITLESS_BIN_DIR, ...) reach
	// the hitless processes a cluster runs (agents, the lab kubelet).
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HITLESS_") {
			env = append(env, kv)
		}
	}
	return env
}

// alive reports whether p still runs the same program it was started with,
// so a recycled PID is never mistaken for, or killed as, a component.
func alive(p Process) bool {
	if p.PID <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "stat"))
	if err == nil && zombie(stat) {
		return false
	}
	if len(cmdline) == 0 {
		// Between fork and the end of exec the kernel shows no command
		// line yet; kernel threads show none either, but are never a
		// component's recycled PID worth worrying about: a signal to one
		// is ignored.
		return syscall.Kill(p.PID, 0) == nil
	}
	first, _, _ := bytes.Cut(cmdline, []byte{0})
	return string(first) == p.Binary
}

func zombie(stat []byte) bool {
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs, and waits until the
// process is gone.
func stop(ctx context.Context, p Process, grace time.Duration) error {
	if !alive(p) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline := time.Now().Add(grace)
	for alive(p) {
		if time.Now().After(deadline) {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
			}
			deadline = time.Now().Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (pid %d) to stop: %w", p.Name, p.PID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// logTail returns the last lines of a component's log, for error messages.
func logTail(p Process, n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
