package lifecycle

import (
	"context"
	"time"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/release"
)

// Entry is one revision in a component's history. It never holds a
// manifest: values stay in the cluster.
type Entry struct {
	Revision int            `json:"revision"`
	Status   release.Status `json:"status"`
	Action   string         `json:"action"`
	Source   string         `json:"source,omitempty"`
	// Chart is a Helm release's chart and version (its values are not shown).
	Chart      string               `json:"chart,omitempty"`
	RollbackTo int                  `json:"rollbackTo,omitempty"`
	Objects    int                  `json:"objects"`
	Carried    []component.Change   `json:"carried,omitempty"`
	Conflicts  []component.Conflict `json:"conflicts,omitempty"`
	DataPlane  []string             `json:"dataPlane,omitempty"`
	Operation  string               `json:"operation"`
	Command    string               `json:"command"`
	Updated    time.Time            `json:"updated"`
}

// History lists a component's revisions, oldest first.
func History(ctx context.Context, c Cluster, name string) ([]Entry, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	revs, err := release.NewStore(c.Client).List(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(revs) == 0 {
		return nil, &StateError{Msg: "no revision of " + name + " is recorded"}
	}
	out := make([]Entry, 0, len(revs))
	for _, r := range revs {
		e := Entry{Revision: r.Number, Status: r.Status, Action: r.Action, Source: r.Source, RollbackTo: r.RollbackTo, Objects: len(r.Applied),
			Carried: r.Carried, Conflicts: r.Conflicts, DataPlane: r.DataPlane, Operation: r.Operation, Command: r.Command, Updated: r.Updated}
		if r.Chart != nil {
			e.Chart = r.Chart.Name + " " + r.Chart.Version
		}
		out = append(out, e)
	}
	return out, nil
}

// Diff shows what upgrading (or, for a component not installed,
// installing) to opts.Source would change, without changing anything.
func Diff(ctx context.Context, c Cluster, opts Options) (*Result, error) {
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	revs, err := release.NewStore(c.Client).List(ctx, opts.Name)
	if err != nil {
		return nil, err
	}
	opts.DryRun = true
	if release.Current(revs) == nil {
		return Install(ctx, c, opts)
	}
	return Upgrade(ctx, c, opts)
}
