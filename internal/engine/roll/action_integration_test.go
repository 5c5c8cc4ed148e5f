package roll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// stampParams are the parameters of the test's own per-node action.
type stampParams struct {
	Key  string `json:"key"`
	Hold string `json:"hold"`
}

// stamp is a per-node action registered from outside the roll package:
// it holds the node for a while (so a test can kill the roll in it), then
// annotates the node with the operation's id.
type stamp struct {
	key  string
	hold time.Duration
}

func (s stamp) Run(ctx context.Context, t roll.Target) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.hold):
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, s.key, t.Operation)
	_, err := t.Client.CoreV1().Nodes().Patch(ctx, t.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// testActions is the default registry plus stamp: what a build of
// hitless with its own action does.
func testActions() *roll.Actions {
	a := roll.DefaultActions()
	err := a.Register(roll.ActionType{Name: "stamp", New: func(params json.RawMessage) (roll.Action, error) {
		var p stampParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		if p.Key == "" {
			return nil, &operation.FieldError{Field: "actions", Msg: "stamp needs a key"}
		}
		hold, err := time.ParseDuration(p.Hold)
		if err != nil {
			return nil, &operation.FieldError{Field: "actions", Msg: "stamp: hold: " + err.Error()}
		}
		return stamp{key: p.Key, hold: hold}, nil
	}})
	if err != nil {
		panic(err)
	}
	return a
}

// TestRegisteredActionKilledAndResumed registers a new per-node action
// from outside the roll package, runs `hitless roll --action` with it,
// SIGKILLs the process while a node is in the action, and runs the same
// command again: the roll resumes the same operation, re-runs the
// interrupted action, stamps every node and leaves none cordoned. The
// roll engine was not edited to know the action.
func TestRegisteredActionKilledAndResumed(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	_, selector, nodes, g := pool(t, 3, 1)
	args := []string{"roll", "--selector", selector, "--action", `stamp={"key":"test.hitless.dev/stamped","hold":"3s"}`}

	cmd, out := cliProcess(t, args...)
	clustertest.Eventually(t, 2*time.Minute, func() error {
		op := lastRollOrNil(t, cs)
		if op == nil {
			return fmt.Errorf("no roll yet")
		}
		for _, n := range op.Record.Nodes {
			if n.Phase == roll.PhaseAction {
				return nil
			}
		}
		return fmt.Errorf("no node in its action yet")
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := lastRoll(t, cs)
	var inAction string
	for _, n := range killed.Record.Nodes {
		if n.Phase == roll.PhaseAction {
			inAction = n.Name
		}
	}

	code, stdout, errOut := hitless(t, args...)
	if code != 0 {
		t.Fatalf("re-run after SIGKILL: exit %d\n%s\n%s\nfirst run:\n%s", code, stdout, errOut, out)
	}
	op := lastRoll(t, cs)
	if op.ID != killed.ID || op.Runs != 2 {
		t.Errorf("re-run is operation %s run %d, want %s run 2", op.ID, op.Runs, killed.ID)
	}
	for _, n := range op.Record.Nodes {
		if n.Phase != roll.PhaseDone {
			t.Errorf("node %s ended in %s: %s", n.Name, n.Phase, n.Error)
		}
		if n.Name == inAction && n.ActionRuns < 2 {
			t.Errorf("node %s was killed in its action but it ran %d time(s)", n.Name, n.ActionRuns)
		}
	}
	for _, name := range nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := node.Annotations["test.hitless.dev/stamped"]; got != op.ID {
			t.Errorf("node %s stamped %q, want %q", name, got, op.ID)
		}
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("left cordoned: %v", left)
	}
	if v := g.Take(false); len(v) > 0 {
		t.Errorf("guard: %s", strings.Join(v, "; "))
	}
	assertLockFree(t, cs)

	// An action nobody registered is bad input naming the flag.
	code, _, errOut = hitless(t, "roll", "--selector", selector, "--action", "reboot")
	if code != 2 || !strings.Contains(errOut, "--action") || !strings.Contains(errOut, `unknown action "reboot"`) {
		t.Errorf("unknown action: exit %d, want 2 naming it\n%s", code, errOut)
	}
}
