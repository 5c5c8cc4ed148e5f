package check

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/kube/store"
)

// Labels on run records.
const (
	LabelRun     = "hitless.dev/checks-run"
	LabelKind    = "hitless.dev/checks-kind"
	LabelProfile = "hitless.dev/checks-profile"
	LabelOK      = "hitless.dev/checks-ok"
	recordPrefix = "hitless-checks-"
	recordKey    = "report.json.gz"
	// Keep is how many runs the store keeps; older ones are pruned.
	Keep = 50
)

// ErrNoRun is returned for an unknown run id.
var ErrNoRun = errors.New("no such checks run")

// NewRunID returns a run id: kind, UTC time and a random suffix.
func NewRunID(kind string, now time.Time) string { return store.NewID(kind, now) }

// Store keeps check runs in the cluster, one ConfigMap per run in
// hitless-system.
type Store struct {
	store *store.Store
	recs  *store.Records[Report]
}

// NewStore returns a Store on the cluster.
func NewStore(cs kubernetes.Interface) *Store {
	s := store.New(cs)
	return &Store{store: s, recs: store.For[Report](s, store.Kind{What: "checks run", Key: recordKey})}
}

// Record stores r and prunes all but the newest Keep runs.
func (s *Store) Record(ctx context.Context, r *Report) error {
	meta := metav1.ObjectMeta{
		Name: recordPrefix + r.ID,
		Labels: map[string]string{
			LabelRun:     r.ID,
			LabelKind:    r.Kind,
			LabelProfile: r.Profile,
			LabelOK:      strconv.FormatBool(r.Summary.OK),
		},
	}
	if _, err := s.recs.Create(ctx, meta, r); err != nil {
		return fmt.Errorf("recording checks run %s: %w", r.ID, err)
	}
	return s.prune(ctx)
}

func (s *Store) prune(ctx context.Context) error {
	runs, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs[min(Keep, len(runs)):] {
		if err := s.store.Delete(ctx, false, recordPrefix+r.ID); err != nil {
			return fmt.Errorf("pruning checks run %s: %w", r.ID, err)
		}
	}
	return nil
}

// Get reads one run.
func (s *Store) Get(ctx context.Context, id string) (*Report, error) {
	rec, err := s.recs.Get(ctx, recordPrefix+id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("checks run %q: %w", id, ErrNoRun)
	}
	if err != nil {
		return nil, err
	}
	return rec.Value, nil
}

// List returns every recorded run, newest first.
func (s *Store) List(ctx context.Context) ([]*Report, error) {
	recs, _, err := s.recs.List(ctx, LabelRun, func(a, b *Report) int { return b.Started.Compare(a.Started) })
	return store.Values(recs), err
}
