package operation_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/operation"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// Every kind of operation the CLI runs is in the registry the CLI builds,
// and status describes each through its kind; an unknown kind is named.
func TestRegistryKnowsEveryKind(t *testing.T) {
	reg, err := operation.NewRegistry(append([]operation.Kind{roll.OperationKind()}, lifecycle.OperationKinds()...)...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.Names(), ","); got != "install,roll,rollback,uninstall,upgrade" {
		t.Errorf("kinds = %s", got)
	}
	if err := reg.Register(roll.OperationKind()); err == nil {
		t.Error("a kind registered twice was accepted")
	}
	rollJournal := &roll.Journal{Operation: journal.Operation{ID: "roll-1", Kind: roll.Kind},
		Record: roll.Record{Nodes: []roll.Node{{Name: "a", Phase: roll.PhaseDone}, {Name: "b", Phase: roll.PhaseDrain}}}}
	raw, err := journal.Encode(rollJournal)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		op       *journal.Raw
		progress string
		line     string
	}{
		{"a roll counts its nodes", raw, "1/2", "node b batch 0: drain"},
		{"an uninstall lists its steps", &journal.Raw{Operation: journal.Operation{ID: "uninstall-1", Kind: lifecycle.ActionUninstall,
			Steps: []journal.Step{{Name: "backup", Runs: 1, Finished: &rollJournal.Started}, {Name: "delete workloads", Runs: 2}}}}, "1 steps", "step delete workloads (runs 2): in progress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := reg.Describe(tc.op)
			if s.Progress != tc.progress || !strings.Contains(strings.Join(s.Lines, "\n"), tc.line) {
				t.Errorf("Describe = %+v, want %s and a line %q", s, tc.progress, tc.line)
			}
		})
	}
	_, err = reg.Lookup(&journal.Operation{ID: "migrate-1", Kind: "migrate"})
	if !errors.Is(err, operation.ErrUnknownKind) || !strings.Contains(err.Error(), "migrate") {
		t.Errorf("Lookup of an unregistered kind = %v", err)
	}
}
