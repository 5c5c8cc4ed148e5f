package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/kube/blob"
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
func NewRunID(kind string, now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%s", kind, now.UTC().Format("20060102-150405"), hex.EncodeToString(b))
}

// Store keeps check runs in the cluster, one ConfigMap per run in
// hitless-system.
type Store struct {
	client kubernetes.Interface
}

// NewStore returns a Store on the cluster.
func NewStore(cs kubernetes.Interface) *Store { return &Store{client: cs} }

// Record stores r and prunes all but the newest Keep runs.
func (s *Store) Record(ctx context.Context, r *Report) error {
	if err := lock.EnsureNamespace(ctx, s.client); err != nil {
		return err
	}
	packed, err := blob.Pack(r)
	if err != nil {
		return fmt.Errorf("recording checks run %s: %w", r.ID, err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      recordPrefix + r.ID,
			Namespace: lock.Namespace,
			Labels: map[string]string{
				LabelRun:                       r.ID,
				LabelKind:                      r.Kind,
				LabelProfile:                   r.Profile,
				LabelOK:                        strconv.FormatBool(r.Summary.OK),
				"app.kubernetes.io/managed-by": "hitless",
			},
		},
		BinaryData: map[string][]byte{recordKey: packed},
	}
	if _, err := s.client.CoreV1().ConfigMaps(lock.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
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
		err := s.client.CoreV1().ConfigMaps(lock.Namespace).Delete(ctx, recordPrefix+r.ID, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("pruning checks run %s: %w", r.ID, err)
		}
	}
	return nil
}

// Get reads one run.
func (s *Store) Get(ctx context.Context, id string) (*Report, error) {
	cm, err := s.client.CoreV1().ConfigMaps(lock.Namespace).Get(ctx, recordPrefix+id, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("checks run %q: %w", id, ErrNoRun)
	}
	if err != nil {
		return nil, fmt.Errorf("reading checks run %s: %w", id, err)
	}
	return decodeRecord(cm)
}

// List returns every recorded run, newest first.
func (s *Store) List(ctx context.Context) ([]*Report, error) {
	cms, err := s.client.CoreV1().ConfigMaps(lock.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelRun})
	if err != nil {
		return nil, fmt.Errorf("listing checks runs: %w", err)
	}
	out := make([]*Report, 0, len(cms.Items))
	for i := range cms.Items {
		r, err := decodeRecord(&cms.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Report) int { return b.Started.Compare(a.Started) })
	return out, nil
}

func decodeRecord(cm *corev1.ConfigMap) (*Report, error) {
	var r Report
	if err := blob.Unpack(cm.BinaryData[recordKey], &r); err != nil {
		return nil, fmt.Errorf("reading checks record %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return &r, nil
}
