package localcluster

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

func TestStartAliveStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := t.TempDir()
	p, err := start(dir, "sleeper", sleep, []string{"300"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !alive(p) {
		t.Fatal("started process not alive")
	}
	// A recycled PID running another program is not ours.
	other := p
	other.Binary = "/usr/bin/something-else"
	time.Sleep(50 * time.Millisecond)
	if alive(other) {
		t.Error("alive() matched a process running a different binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx, p, time.Second); err != nil {
		t.Fatal(err)
	}
	if alive(p) {
		t.Error("process alive after stop")
	}
	if err := stop(ctx, p, time.Second); err != nil {
		t.Errorf("stopping a stopped process: %v", err)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := start(t.TempDir(), "stubborn", sh, []string{"-c", "trap '' TERM; while :; do sleep 0.1; done"}, true)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the trap install
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stop(ctx, p, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if alive(p) {
		t.Error("a process ignoring SIGTERM survived stop")
	}
}
