package roll

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		field string
	}{
		{"defaults are valid", Spec{}, ""},
		{"selector and nodes", Spec{Selector: "a=b", Nodes: []string{"n1"}}, "selector"},
		{"bad selector", Spec{Selector: "a=(b"}, "selector"},
		{"bad node name", Spec{Nodes: []string{"Bad_Node"}}, "nodes"},
		{"zero batch", Spec{Batch: "0"}, "batch"},
		{"percent over 100", Spec{Batch: "150%"}, "batch"},
		{"batch not a number", Spec{Batch: "some"}, "batch"},
		{"unknown order", Spec{Order: "random"}, "order"},
		{"unknown drain timeout policy", Spec{OnDrainTimeout: "ignore"}, "onDrainTimeout"},
		{"negative canary", Spec{Canary: -1}, "canary"},
		{"daemonset without namespace", Spec{Actions: []ActionSpec{{Name: ActionRestartDaemonSet, Params: []byte(`{"daemonSet":"vrouter"}`)}}}, "restartDaemonSet"},
		{"bad label key", Spec{Actions: []ActionSpec{{Name: ActionSetNodeLabels, Params: []byte(`{"values":{"bad key":"v"}}`)}}}, "setNodeLabels"},
		{"unknown action", Spec{Actions: []ActionSpec{{Name: "reboot"}}}, "actions"},
		{"unknown action parameter", Spec{Actions: []ActionSpec{{Name: ActionExec, Params: []byte(`{"command":"true","shell":"zsh"}`)}}}, "actions"},
		{"confirm with pre-node", Spec{Confirm: true, PreNode: "true"}, "confirm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec
			s.Defaults()
			err := s.Validate()
			if err == nil {
				_, err = DefaultActions().resolve("actions", s.Actions)
			}
			var se *SpecError
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.field != "" && (!errors.As(err, &se) || se.Field != tt.field):
				t.Errorf("error = %v, want one naming %s", err, tt.field)
			}
		})
	}
}

func TestBatchSize(t *testing.T) {
	tests := []struct {
		batch string
		total int
		want  int
	}{
		{"1", 20, 1}, {"3", 20, 3}, {"10%", 500, 50}, {"10%", 5, 1}, {"25%", 7, 1}, {"50%", 7, 3}, {"100%", 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.batch, func(t *testing.T) {
			s := Spec{Batch: tt.batch}
			if got := s.BatchSize(tt.total); got != tt.want {
				t.Errorf("BatchSize(%d) = %d, want %d", tt.total, got, tt.want)
			}
		})
	}
}

func TestSpecHashIgnoresNodeOrder(t *testing.T) {
	a := Spec{Nodes: []string{"b", "a"}}
	b := Spec{Nodes: []string{"a", "b"}}
	a.Defaults()
	b.Defaults()
	if a.Hash() != b.Hash() {
		t.Error("the same nodes in another order must resume the same roll")
	}
	c := b
	c.Actions = []ActionSpec{{Name: ActionExec, Params: []byte(`{"command":"true"}`)}}
	if c.Hash() == b.Hash() {
		t.Error("a different action must be a different roll")
	}
}

func TestBatches(t *testing.T) {
	nodes := []NodePlan{{Name: "a1", Zone: "a"}, {Name: "a2", Zone: "a"}, {Name: "a3", Zone: "a"}, {Name: "b1", Zone: "b"}, {Name: "b2", Zone: "b"}}
	tests := []struct {
		name string
		spec Spec
		size int
		want [][]string
	}{
		{"by two", Spec{Order: OrderName}, 2, [][]string{{"a1", "a2"}, {"a3", "b1"}, {"b2"}}},
		{"zones never mix", Spec{Order: OrderZone}, 2, [][]string{{"a1", "a2"}, {"a3"}, {"b1", "b2"}}},
		{"canary alone first", Spec{Order: OrderName, Canary: 1}, 2, [][]string{{"a1"}, {"a2", "a3"}, {"b1", "b2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := batches(nodes, tt.spec, tt.size)
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("batches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrderNodes(t *testing.T) {
	mk := func(name, zone string, cp bool) corev1.Node {
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone}}}
		if cp {
			n.Labels["node-role.kubernetes.io/control-plane"] = ""
		}
		return n
	}
	tests := []struct {
		order string
		want  []string
	}{
		{OrderName, []string{"a-cp", "b", "c", "d"}},
		{OrderZone, []string{"c", "a-cp", "d", "b"}},
		{OrderControlPlaneLast, []string{"b", "c", "d", "a-cp"}},
	}
	for _, tt := range tests {
		t.Run(tt.order, func(t *testing.T) {
			nodes := []corev1.Node{mk("d", "z2", false), mk("b", "z3", false), mk("a-cp", "z2", true), mk("c", "z1", false)}
			orderNodes(nodes, tt.order)
			var got []string
			for _, n := range nodes {
				got = append(got, n.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order %s = %v, want %v", tt.order, got, tt.want)
			}
		})
	}
}

// FuzzBatch: --batch of any text is a positive count, a percentage from
// 1 to 100, or an error; a batch never resolves to no node or to more
// nodes than there are.
func FuzzBatch(f *testing.F) {
	for _, s := range []string{"1", "10%", " 50% ", "0", "-1", "101%", "1e3", "%", "9223372036854775807"} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, s string, total int) {
		n, pct, err := ParseBatch(s)
		if err != nil {
			return
		}
		if n < 1 || (pct && n > 100) {
			t.Fatalf("%q read as %d (percent %v)", s, n, pct)
		}
		if total < 1 || total > 100000 {
			return
		}
		spec := Spec{Batch: s}
		if size := spec.BatchSize(total); size < 1 || (pct && size > total) {
			t.Fatalf("batch %q of %d nodes: %d", s, total, size)
		}
	})
}

// FuzzSpec: a journaled roll spec of any shape (what resume reads back)
// is refused by Validate or is one the roll can run: a batch, timeouts
// that are not negative, known drain-timeout handling.
func FuzzSpec(f *testing.F) {
	f.Add([]byte(`{"selector":"pool=a","batch":"50%","drainTimeout":60000000000,"onDrainTimeout":"fail"}`))
	f.Add([]byte(`{"nodes":["n1"],"batch":"0","actions":[{"type":"exec","params":{"command":"true"}}],"confirm":true,"preNode":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Spec
		if json.Unmarshal(b, &s) != nil {
			return
		}
		s.Defaults()
		if s.Validate() != nil {
			return
		}
		if _, _, err := ParseBatch(s.Batch); err != nil {
			t.Fatalf("a valid spec with batch %q: %v", s.Batch, err)
		}
		if s.DrainTimeout < 0 || s.ActionTimeout < 0 || s.EvictRetryDelay < 0 {
			t.Fatalf("a valid spec with negative timeouts: %+v", s)
		}
		_ = s.Hash()
	})
}

func TestActionsWithout(t *testing.T) {
	all := DefaultActions()
	without := all.Without(ActionExec)
	if slices.Contains(without.Names(), ActionExec) || len(without.Names()) != len(all.Names())-1 {
		t.Errorf("without exec: %v (all: %v)", without.Names(), all.Names())
	}
	if err := without.Validate([]ActionSpec{{Name: ActionExec, Params: []byte(`{"command":"id"}`)}}); err == nil || !strings.Contains(err.Error(), `unknown action "exec"`) {
		t.Errorf("exec in a registry without it: %v", err)
	}
	if !slices.Contains(all.Names(), ActionExec) {
		t.Error("Without changed the registry it was called on")
	}
}
