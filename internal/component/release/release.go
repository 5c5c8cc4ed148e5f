package release

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/kube/store"
)

// Labels and type of the record Secrets.
const (
	LabelComponent = "hitless.dev/component"
	LabelRevision  = "hitless.dev/revision"
	LabelStatus    = "hitless.dev/revision-status"
	SecretType     = corev1.SecretType("hitless.dev/revision")
	BackupType     = corev1.SecretType("hitless.dev/backup")
	dataKey        = "revision.json.gz"
	backupKey      = "objects.json.gz"
)

// Status of a revision.
type Status string

// The statuses: Pending while an operation deploys it, Deployed when it
// is what runs, Superseded once another revision is deployed, Failed when
// its operation gave up, Uninstalled after uninstall.
const (
	Pending     Status = "pending"
	Deployed    Status = "deployed"
	Superseded  Status = "superseded"
	Failed      Status = "failed"
	Uninstalled Status = "uninstalled"
)

// Revision is one version of a component as deployed.
type Revision struct {
	Component string    `json:"component"`
	Number    int       `json:"number"`
	Status    Status    `json:"status"`
	Action    string    `json:"action"` // install, upgrade, rollback
	Operation string    `json:"operation"`
	Command   string    `json:"command"`
	Source    string    `json:"source,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	// RollbackTo is the revision a rollback restored.
	RollbackTo int `json:"rollbackTo,omitempty"`
	// Vendor is the manifests as shipped, the base of the next port.
	Vendor []map[string]any `json:"vendor"`
	// Applied is what hitless applied: the vendor manifests with the
	// customizations carried over. Its objects are the inventory.
	Applied   []map[string]any     `json:"applied"`
	Carried   []component.Change   `json:"carried,omitempty"`
	Conflicts []component.Conflict `json:"conflicts,omitempty"`
	Notes     []string             `json:"notes,omitempty"`
	// DataPlane lists the DaemonSets (namespace/name) rolled node by node.
	DataPlane []string `json:"dataPlane,omitempty"`
	// Chart is the Helm chart the vendor manifests were rendered from.
	Chart *Chart `json:"chart,omitempty"`
}

// Chart is a Helm chart release: the chart and the user's values (kept in
// the revision's Secret; never printed).
type Chart struct {
	Name      string         `json:"name"`
	Version   string         `json:"version"`
	Namespace string         `json:"namespace"`
	Values    map[string]any `json:"values,omitempty"`
}

// Ref names one object of an inventory.
type Ref struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r Ref) String() string {
	s := r.Kind + "/"
	if r.Namespace != "" {
		s += r.Namespace + "/"
	}
	return s + r.Name
}

// GroupKind of the object.
func (r Ref) GroupKind() schema.GroupKind { return schema.GroupKind{Group: r.Group, Kind: r.Kind} }

// RefOf names u.
func RefOf(u *unstructured.Unstructured) Ref {
	gvk := u.GroupVersionKind()
	return Ref{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Objects converts stored manifests back.
func Objects(ms []map[string]any) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(ms))
	for i, m := range ms {
		out[i] = (&unstructured.Unstructured{Object: m}).DeepCopy()
	}
	return out
}

// Maps converts objects for storing.
func Maps(objs []*unstructured.Unstructured) []map[string]any {
	out := make([]map[string]any, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy().Object
	}
	return out
}

// Inventory is the revision's object set.
func (r *Revision) Inventory() []Ref {
	out := make([]Ref, 0, len(r.Applied))
	for _, m := range r.Applied {
		out = append(out, RefOf(&unstructured.Unstructured{Object: m}))
	}
	return out
}

// Store reads and writes revisions.
type Store struct {
	revs    *store.Records[Revision]
	backups *store.Records[[]map[string]any]
}

// NewStore returns a Store on the cluster.
func NewStore(cs kubernetes.Interface) *Store {
	s := store.New(cs)
	return &Store{
		revs:    store.For[Revision](s, store.Kind{What: "revision", Secret: true, Type: SecretType, Key: dataKey}),
		backups: store.For[[]map[string]any](s, store.Kind{What: "backup", Secret: true, Type: BackupType, Key: backupKey}),
	}
}

// SecretName is the record of revision n of component.
func SecretName(component string, n int) string {
	return fmt.Sprintf("hitless-rev-%s-%d", component, n)
}

// BackupName is the backup of the objects revision n changed or deleted.
func BackupName(component string, n int) string {
	return fmt.Sprintf("hitless-backup-%s-%d", component, n)
}

// Put creates or replaces the record of rev.
func (s *Store) Put(ctx context.Context, rev *Revision) error {
	rev.Updated = time.Now().UTC()
	meta := metav1.ObjectMeta{
		Name: SecretName(rev.Component, rev.Number),
		Labels: map[string]string{
			LabelComponent: rev.Component,
			LabelRevision:  strconv.Itoa(rev.Number),
			LabelStatus:    string(rev.Status),
		},
	}
	if err := s.revs.Put(ctx, meta, rev); err != nil {
		return fmt.Errorf("recording revision %d of %s: %w", rev.Number, rev.Component, err)
	}
	return nil
}

// List returns every revision of component, oldest first.
func (s *Store) List(ctx context.Context, component string) ([]*Revision, error) {
	recs, _, err := s.revs.List(ctx, LabelComponent+"="+component+","+LabelRevision, func(a, b *Revision) int { return a.Number - b.Number })
	if err != nil {
		return nil, fmt.Errorf("listing revisions of %s: %w", component, err)
	}
	return store.Values(recs), nil
}

// Current returns the deployed revision, or nil.
func Current(revs []*Revision) *Revision {
	for i := len(revs) - 1; i >= 0; i-- {
		if revs[i].Status == Deployed {
			return revs[i]
		}
	}
	return nil
}

// Find returns revision n, or nil.
func Find(revs []*Revision, n int) *Revision {
	for _, r := range revs {
		if r.Number == n {
			return r
		}
	}
	return nil
}

// Next is the number of the next revision.
func Next(revs []*Revision) int {
	if len(revs) == 0 {
		return 1
	}
	return revs[len(revs)-1].Number + 1
}

// Backup records the prior state of objects before revision n changes or
// deletes them. The first backup of an object wins: a resumed operation
// adds objects but never overwrites what was there before it started.
func (s *Store) Backup(ctx context.Context, component string, n int, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	have, err := s.Backups(ctx, component, n)
	if err != nil {
		return nil, err
	}
	known := map[Ref]bool{}
	for _, o := range have {
		known[RefOf(o)] = true
	}
	added := false
	for _, o := range objs {
		if !known[RefOf(o)] {
			c := o.DeepCopy()
			unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
			have = append(have, c)
			known[RefOf(o)] = true
			added = true
		}
	}
	if !added {
		return have, nil
	}
	meta := metav1.ObjectMeta{
		Name: BackupName(component, n),
		Labels: map[string]string{
			LabelComponent:          component,
			"hitless.dev/backup-of": strconv.Itoa(n),
		},
	}
	ms := Maps(have)
	if err := s.backups.Put(ctx, meta, &ms); err != nil {
		return nil, fmt.Errorf("backing up before revision %d of %s: %w", n, component, err)
	}
	return have, nil
}

// Backups returns the objects backed up for revision n.
func (s *Store) Backups(ctx context.Context, component string, n int) ([]*unstructured.Unstructured, error) {
	rec, err := s.backups.Get(ctx, BackupName(component, n))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the backup of revision %d of %s: %w", n, component, err)
	}
	return Objects(*rec.Value), nil
}
