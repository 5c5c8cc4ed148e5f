package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/kube/store"
)

// backupKind keeps a migration's backups: one Secret per operation, the
// objects each step saved before it changed them (objects may hold
// secrets).
func backupKind() store.Kind {
	return store.Kind{What: "migration backup", Secret: true, Type: "hitless.dev/migration-backup", Key: "backup"}
}

// backups are the objects saved by step, as JSON.
type backups map[string][]json.RawMessage

func backupName(id string) string { return "hitless-mbak-" + id }

func (r *runner) backupRecords() *store.Records[backups] {
	return store.For[backups](store.New(r.c.Client), backupKind())
}

// readBackups returns the operation's backups (empty when none).
func (r *runner) readBackups(ctx context.Context) (backups, error) {
	rec, err := r.backupRecords().Get(ctx, backupName(r.res.Operation))
	if errors.Is(err, store.ErrNotFound) {
		return backups{}, nil
	}
	if err != nil {
		return nil, err
	}
	return *rec.Value, nil
}

// saved returns the objects step saved, or nil.
func (r *runner) saved(ctx context.Context, step string) ([]*unstructured.Unstructured, error) {
	all, err := r.readBackups(ctx)
	if err != nil {
		return nil, err
	}
	raw, ok := all[step]
	if !ok {
		return nil, nil
	}
	out := make([]*unstructured.Unstructured, 0, len(raw))
	for _, b := range raw {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("reading the backup of step %s: %w", step, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// save keeps objs as step's backup unless an earlier run saved one: the
// first backup wins, so a resumed step never backs up what it changed.
// It returns the backup that is kept.
func (r *runner) save(ctx context.Context, step string, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := r.readBackups(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := all[step]; ok {
		return r.saved(ctx, step)
	}
	raw := make([]json.RawMessage, 0, len(objs))
	for _, u := range objs {
		b, err := u.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", refOf(u), err)
		}
		raw = append(raw, b)
	}
	all[step] = raw
	meta := metav1.ObjectMeta{Name: backupName(r.res.Operation), Labels: map[string]string{"hitless.dev/operation": r.res.Operation}}
	if err := r.backupRecords().Put(ctx, meta, &all); err != nil {
		return nil, err
	}
	if r.opts.OnBackup != nil {
		if _, err := r.opts.OnBackup(ctx, step, objs); err != nil {
			return nil, err
		}
	}
	return objs, nil
}
