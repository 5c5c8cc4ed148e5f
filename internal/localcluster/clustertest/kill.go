package clustertest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
)

// StartCLI runs the test binary as the hitless CLI (its TestMain hands
// over when EnvRunCLI is "1"), a process of its own that a test can
// SIGKILL; done receives its exit.
func (e *Env) StartCLI(t testing.TB, args ...string) (cmd *exec.Cmd, out *bytes.Buffer, done chan error) {
	t.Helper()
	cmd = exec.Command(os.Args[0], append([]string{"--kubeconfig", e.Kubeconfig(t)}, args...)...) //nolint:gosec // the test binary
	cmd.Env = append(os.Environ(), EnvRunCLI+"=1")
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, out, done
}

// WaitCLI waits for a run StartCLI began and returns how it ended; a run
// still going after within gets SIGQUIT (the Go runtime prints every
// goroutine's stack and exits), then SIGKILL, and fails the test with
// what it printed: where it hung.
func WaitCLI(t testing.TB, cmd *exec.Cmd, out *bytes.Buffer, done chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		t.Fatalf("%s still running after %s, stopped with SIGQUIT; its output and goroutines:\n%s", cmd.Args[1:], within, out)
		return nil
	}
}

// OperationSince returns the journal of the operation of kind started
// since, or nil; two such operations fail the test (a re-run must resume,
// not start anew).
func (e *Env) OperationSince(t testing.TB, kind string, since time.Time) *journal.Raw {
	t.Helper()
	ops, err := journal.NewStore(e.Client(t)).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var found *journal.Raw
	for _, op := range ops {
		if op.Kind == kind && !op.Started.Before(since) {
			if found != nil && found.ID != op.ID {
				t.Fatalf("two %s operations since %s: %s and %s; a re-run must resume, not start anew", kind, since, found.ID, op.ID)
			}
			found = op
		}
	}
	return found
}

// Kills is how a command is killed again and again.
type Kills struct {
	// Kind is the operation kind the command journals.
	Kind string
	// Times it is killed before the run that may finish.
	Times int
	// MaxDelay bounds each kill's moment after the run counted itself in
	// the journal.
	MaxDelay time.Duration
	// Release, when set, runs before the last run (lets go of what held
	// the operation long enough for every kill).
	Release func()
	// Finish bounds the last run (default 5m).
	Finish time.Duration
}

// KillAndRerun runs the CLI command and SIGKILLs it at a random moment
// after the run has begun acting (its journal created, or its run
// counted in it), k.Times times, then lets the same command finish. It
// returns the operation's journal and how many runs found it.
func (e *Env) KillAndRerun(t testing.TB, k Kills, args ...string) (*journal.Raw, int) {
	t.Helper()
	since := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17)) //nolint:gosec // random kill moments
	resuming, runs := 0, 0
	for i := range k.Times {
		if e.OperationSince(t, k.Kind, since) != nil {
			resuming++ // this run finds the journal
		}
		cmd, out, done := e.StartCLI(t, args...)
		// However slow the process starts (a race-instrumented binary on
		// a busy machine), the kill lands in the operation.
		Eventually(t, 2*time.Minute, func() error {
			select {
			case err := <-done:
				t.Fatalf("kill %d: %s ended (%v) before it was killed; the operation is too short for %d kills\n%s", i+1, k.Kind, err, k.Times, out)
			default:
			}
			if op := e.OperationSince(t, k.Kind, since); op != nil && op.Runs > runs {
				runs = op.Runs
				return nil
			}
			return errors.New("this run has not journaled yet")
		})
		delay := time.Duration(rng.Int64N(int64(k.MaxDelay)))
		select {
		case err := <-done:
			t.Fatalf("kill %d: %s ended (%v) before the kill %s into it; the operation is too short for %d kills\n%s", i+1, k.Kind, err, delay, k.Times, out)
		case <-time.After(delay):
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Logf("kill %d %s after run %d journaled", i+1, delay.Round(time.Millisecond), runs)
	}
	resuming++ // the last run finds it
	if k.Release != nil {
		k.Release()
	}
	if k.Finish == 0 {
		k.Finish = 5 * time.Minute
	}
	cmd, out, done := e.StartCLI(t, args...)
	if err := WaitCLI(t, cmd, out, done, k.Finish); err != nil {
		t.Fatalf("the run after %d kills: %v\n%s", k.Times, err, out)
	}
	op := e.OperationSince(t, k.Kind, since)
	if op == nil {
		t.Fatalf("no %s journal", k.Kind)
	}
	return op, resuming
}
