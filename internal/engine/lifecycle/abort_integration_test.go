package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// killMidRoll runs `hitless ARGS` as a real process and SIGKILLs it once a
// node of its data-plane roll is cordoned; it returns the operation's id.
func killMidRoll(t *testing.T, args ...string) string {
	t.Helper()
	cs := env.Client(t)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)...)
	cmd.Env = append(os.Environ(), envRunCLI+"=1")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	started := time.Now().Add(-time.Second)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	clustertest.Eventually(t, 2*time.Minute, func() error {
		select {
		case <-exited:
			t.Fatalf("%s ended before any node was cordoned:\n%s", args[0], output.String())
		default:
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if n.Spec.Unschedulable && n.Annotations[roll.AnnotationOperation] != "" {
				return nil
			}
		}
		return errorf("no node cordoned by hitless yet")
	})
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	ops, err := journal.NewStore(cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Kind == args[0] && op.Started.After(started) {
			return op.ID
		}
	}
	t.Fatalf("no %s journaled", args[0])
	return ""
}

func protectedApp(t *testing.T) {
	t.Helper()
	apps := env.Namespace(t)
	env.Deployment(t, apps, "web", 4, clustertest.Workload{GracePeriod: 1})
	env.PDB(t, apps, "web", ptr.To(intstr.FromInt32(1)), nil)
	env.WaitDeploymentAvailable(t, apps, "web", time.Minute)
}

// TestAbortUpgradeKilledMidRoll: `hitless abort` of an upgrade killed in
// the middle of its data-plane roll (found through the registry by its
// kind) undoes it newest first: the roll's node is uncordoned, every
// object is back as it was before the upgrade, what the new release added
// is gone, its revision is failed and the one before deployed again.
func TestAbortUpgradeKilledMidRoll(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	name := "aborty"
	v1, v2 := writeComponent(t, name, "1.0.0", 2, 2), writeComponent(t, name, "1.1.0", 2, 3)
	protectedApp(t)
	mustHitless(t, "install", "-f", v1, "--name", name)
	t.Cleanup(func() { hitless(t, "uninstall", "--name", name, "--force-namespaces") })
	before := snapshot(t, name)

	id := killMidRoll(t, "upgrade", "-f", v2, "--name", name)
	code, out, errOut := hitless(t, "status", id)
	if code != 0 || !strings.Contains(out, "upgrade "+id) || !strings.Contains(out, "step backup") || !strings.Contains(out, "step data-plane") {
		t.Errorf("status of the killed upgrade: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = hitless(t, "abort", id)
	if code != 0 {
		t.Fatalf("abort: exit %d\n%s%s", code, out, errOut)
	}

	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || n.Annotations[roll.AnnotationOperation] != "" {
			t.Errorf("node %s left cordoned (%v) or marked (%q)", n.Name, n.Spec.Unschedulable, n.Annotations[roll.AnnotationOperation])
		}
	}
	after := snapshot(t, name)
	for obj, was := range before {
		if after[obj] != was {
			t.Errorf("%s not restored:\n  before %s\n  after  %s", obj, was, after[obj])
		}
	}
	var want []string
	for obj := range before {
		want = append(want, obj)
	}
	got := labelled(t, "hitless.dev/name="+name)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("labelled objects after abort %v\nwant the first release's %v", got, want)
	}
	revs := revisions(t, name)
	if cur := release.Current(revs); cur == nil || cur.Number != 1 {
		t.Errorf("deployed revision after abort: %+v", cur)
	}
	if r2 := release.Find(revs, 2); r2 == nil || r2.Status != release.Failed {
		t.Errorf("revision 2 after abort: %+v", r2)
	}
	ops, err := journal.NewStore(cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if (op.ID == id || op.Kind == roll.Kind) && op.Status.Resumable() {
			t.Errorf("operation %s (%s) still %s after abort", op.ID, op.Kind, op.Status)
		}
	}
	if h, err := lock.Current(ctx, cs); err != nil || h != nil {
		t.Errorf("lock after abort: %+v %v", h, err)
	}
}

// TestResumeUpgradeByID: `hitless resume ID` continues a killed upgrade
// through the registry (its journaled command run again) to the end.
func TestResumeUpgradeByID(t *testing.T) {
	cs := env.Client(t)
	name := "resumy"
	v1, v2 := writeComponent(t, name, "1.0.0", 1, 1), writeComponent(t, name, "1.1.0", 1, 1)
	protectedApp(t)
	mustHitless(t, "install", "-f", v1, "--name", name)
	t.Cleanup(func() { hitless(t, "uninstall", "--name", name, "--force-namespaces") })
	id := killMidRoll(t, "upgrade", "-f", v2, "--name", name)

	code, out, errOut := hitless(t, "resume", id, "-o", "json")
	if code != 0 {
		t.Fatalf("resume %s: exit %d\n%s%s", id, code, out, errOut)
	}
	var res lifecycle.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("resume output: %v\n%s", err, out)
	}
	if !res.Resumed || res.Operation != id || res.Revision != 2 {
		t.Errorf("resume: resumed %v operation %s revision %d; want %s resumed at revision 2", res.Resumed, res.Operation, res.Revision, id)
	}
	op, err := journal.NewStore(cs).Get(context.Background(), id)
	if err != nil || op.Status != journal.Succeeded || op.Runs != 2 {
		t.Errorf("operation %s after resume: %+v %v", id, op, err)
	}
}
