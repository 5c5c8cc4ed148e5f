package kubelet

import (
	"encoding/json"
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

// process is one run of a container's program.
type process struct {
	cmd      *exec.Cmd
	pidFile  string
	exited   chan struct{}
	code     int32
	started  time.Time
	finished time.Time
}

// startProcess runs c through `hitless cluster enter` in a mount namespace
// of its own, in its own process group (a stop signals the whole group),
// killed if the lab kubelet dies.
func startProcess(self, dir, name string, c Container) (*process, error) {
	spec := filepath.Join(dir, name+".json")
	c.Parent = os.Getpid()
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing container spec: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening container log: %w", err)
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(self, "cluster", "enter", spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting container %s: %w", name, err)
	}
	p := &process{cmd: cmd, pidFile: filepath.Join(dir, name+".pid"), exited: make(chan struct{}), started: time.Now()}
	_ = os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	go func() {
		err := cmd.Wait()
		p.code, p.finished = exitCode(err), time.Now()
		_ = os.Remove(p.pidFile)
		close(p.exited)
	}()
	return p, nil
}

func exitCode(err error) int32 {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int32(ws.Signal())
		}
		return int32(ee.ExitCode())
	}
	return 128
}

// signal sends sig to the process's group.
func (p *process) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop sends SIGTERM, waits until the deadline, then SIGKILL.
func (p *process) stop(deadline time.Time) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.signal(syscall.SIGKILL)
		<-p.exited
	}
}

// killRecorded kills the process groups whose pid files an earlier lab
// kubelet left in dir (its processes should have died with it).
func killRecorded(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		// Only a process that still carries the pod's mark: a pid may
		// have been reused.
		if env, rerr := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ")); err == nil && rerr == nil && pid > 1 &&
			strings.Contains(string(env), EnvPod+"="+filepath.Base(dir)+"\x00") {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = os.Remove(f)
	}
}
