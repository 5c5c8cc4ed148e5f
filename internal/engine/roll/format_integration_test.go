package roll_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/cli/exitcode"
	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// TestFormat0JournalInTheCluster: a roll journaled by the previous version
// (the golden file of its format), interrupted with a node cordoned, is
// refused by resume and by a new roll, each saying to abort it; abort
// uncordons the node it had in flight; status shows it.
func TestFormat0JournalInTheCluster(t *testing.T) {
	cs := env.Client(t)
	ctx := context.Background()
	_, selector, nodes, _ := pool(t, 2, 1)
	b, err := os.ReadFile("../journal/testdata/format0-roll.json")
	if err != nil {
		t.Fatal(err)
	}
	// The golden journal, on this test's nodes: w1 done, w2 in its drain.
	text := strings.NewReplacer(`"w1"`, `"`+nodes[0]+`"`, `"w2"`, `"`+nodes[1]+`"`).Replace(string(b))
	var op map[string]any
	if err := json.Unmarshal([]byte(text), &op); err != nil {
		t.Fatal(err)
	}
	id := op["id"].(string)
	raw := json.RawMessage(text)
	recs := store.For[json.RawMessage](store.New(cs), store.Kind{What: "journal", Key: "operation.json.gz"})
	if _, err := recs.Create(ctx, metav1.ObjectMeta{Name: "hitless-op-" + id,
		Labels: map[string]string{journal.LabelOperation: id, journal.LabelKind: "roll", journal.LabelStatus: "interrupted"}}, &raw); err != nil {
		t.Fatal(err)
	}
	patch := `{"metadata":{"annotations":{"` + roll.AnnotationOperation + `":"` + id + `"}},"spec":{"unschedulable":true}}`
	if _, err := cs.CoreV1().Nodes().Patch(ctx, nodes[1], types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	code, _, errOut := hitless(t, "resume", id)
	if code != exitcode.Usage || !strings.Contains(errOut, "earlier hitless") || !strings.Contains(errOut, "hitless abort "+id) {
		t.Errorf("resume of a format-0 roll: exit %d, want 2 saying to abort it\n%s", code, errOut)
	}
	code, _, errOut = hitless(t, "roll", "--selector", selector)
	if code != exitcode.Usage || !strings.Contains(errOut, "hitless abort "+id) {
		t.Errorf("a new roll beside an unfinished format-0 roll: exit %d, want 2 naming it\n%s", code, errOut)
	}
	code, out, _ := hitless(t, "status", id)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "1/2") {
		t.Errorf("status of a format-0 roll: exit %d\n%s", code, out)
	}
	code, out, errOut = hitless(t, "abort", id)
	if code != 0 {
		t.Fatalf("abort of a format-0 roll: exit %d\n%s%s", code, out, errOut)
	}
	if left := cordoned(t, cs, nodes); len(left) != 0 {
		t.Errorf("left cordoned after abort: %v", left)
	}
	got, err := journal.NewStore(cs).Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != journal.Aborted {
		t.Errorf("status %s after abort", got.Status)
	}
	assertLockFree(t, cs)
}
