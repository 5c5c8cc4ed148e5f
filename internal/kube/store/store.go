package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/hitless-dev/hitless/internal/kube/transient"
)

// Namespace holds every record of hitless, and its lock.
const Namespace = "hitless-system"

// LabelManagedBy marks every object hitless keeps.
const LabelManagedBy = "app.kubernetes.io/managed-by"

// ErrNotFound is wrapped by Get for a record that does not exist.
var ErrNotFound = errors.New("record not found")

// Store is the cluster's hitless-system namespace.
type Store struct {
	client kubernetes.Interface
}

// New returns the store of the cluster cs talks to.
func New(cs kubernetes.Interface) *Store { return &Store{client: cs} }

// ConfigMaps is the namespace's ConfigMaps, for watches.
func (s *Store) ConfigMaps() typedcorev1.ConfigMapInterface {
	return s.client.CoreV1().ConfigMaps(Namespace)
}

// EnsureNamespace creates hitless-system if it is missing.
func (s *Store) EnsureNamespace(ctx context.Context) error {
	_, err := s.client.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", Namespace, err)
	}
	_, err = s.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   Namespace,
		Labels: map[string]string{LabelManagedBy: "hitless"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}
	return nil
}

// Delete removes the ConfigMap (or with secret, the Secret) name; one
// that is already gone is no error.
func (s *Store) Delete(ctx context.Context, secret bool, name string) error {
	var err error
	if secret {
		err = s.client.CoreV1().Secrets(Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	} else {
		err = s.ConfigMaps().Delete(ctx, name, metav1.DeleteOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s/%s: %w", Namespace, name, err)
	}
	return nil
}

// Kind describes one kind of record.
type Kind struct {
	// What names the kind in errors ("journal", "checks run").
	What string
	// Secret keeps the records in Secrets of Type, else in ConfigMaps.
	Secret bool
	Type   corev1.SecretType
	// Key is the data key holding the packed value.
	Key string
}

// Records reads and writes the records of one kind, values of type T.
type Records[T any] struct {
	store *Store
	kind  Kind
}

// For returns the records of kind k in s.
func For[T any](s *Store, k Kind) *Records[T] { return &Records[T]{store: s, kind: k} }

// Record is one record's value with the metadata it was stored with.
type Record[T any] struct {
	Value *T
	Meta  metav1.ObjectMeta
}

// Create stores v as a new record named by meta; it returns the record's
// resource version.
func (r *Records[T]) Create(ctx context.Context, meta metav1.ObjectMeta, v *T) (string, error) {
	var rv string
	err := r.store.creating(ctx, func() (err error) {
		rv, err = r.write(ctx, meta, v, false)
		return err
	})
	return rv, err
}

// creating runs create, and when it fails because hitless-system does not
// exist yet, creates the namespace and runs it again: the namespace is
// read only when it is missing, not before every write.
func (s *Store) creating(ctx context.Context, create func() error) error {
	err := create()
	if !apierrors.IsNotFound(err) {
		return err
	}
	if err := s.EnsureNamespace(ctx); err != nil {
		return err
	}
	return create()
}

// Update replaces the record if nobody changed it since meta's resource
// version (apierrors.IsConflict otherwise); it returns the new version.
func (r *Records[T]) Update(ctx context.Context, meta metav1.ObjectMeta, v *T) (string, error) {
	return r.write(ctx, meta, v, true)
}

// Put creates or replaces the record, whoever wrote it last: for records
// with a single writer. Transient errors are retried.
func (r *Records[T]) Put(ctx context.Context, meta metav1.ObjectMeta, v *T) error {
	meta.ResourceVersion = ""
	return transient.Retry(ctx, func() error {
		for attempt := 0; ; attempt++ {
			_, err := r.write(ctx, meta, v, true)
			if apierrors.IsNotFound(err) {
				_, err = r.Create(ctx, meta, v)
			}
			if !apierrors.IsAlreadyExists(err) || attempt >= 3 {
				return err // created meanwhile by another writer: replace it
			}
		}
	})
}

func (r *Records[T]) write(ctx context.Context, meta metav1.ObjectMeta, v *T, update bool) (string, error) {
	packed, err := Pack(v)
	if err != nil {
		return "", fmt.Errorf("recording %s %s: %w", r.kind.What, meta.Name, err)
	}
	meta.Namespace = Namespace
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	meta.Labels[LabelManagedBy] = "hitless"
	var out metav1.Object
	if r.kind.Secret {
		sec := &corev1.Secret{ObjectMeta: meta, Type: r.kind.Type, Data: map[string][]byte{r.kind.Key: packed}}
		secrets := r.store.client.CoreV1().Secrets(Namespace)
		if update {
			out, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		} else {
			out, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		}
	} else {
		cm := &corev1.ConfigMap{ObjectMeta: meta, BinaryData: map[string][]byte{r.kind.Key: packed}}
		if update {
			out, err = r.store.ConfigMaps().Update(ctx, cm, metav1.UpdateOptions{})
		} else {
			out, err = r.store.ConfigMaps().Create(ctx, cm, metav1.CreateOptions{})
		}
	}
	if err != nil {
		return "", fmt.Errorf("recording %s %s/%s: %w", r.kind.What, Namespace, meta.Name, err)
	}
	return out.GetResourceVersion(), nil
}

// Get reads the record name; a missing one wraps ErrNotFound.
func (r *Records[T]) Get(ctx context.Context, name string) (*Record[T], error) {
	var (
		meta metav1.ObjectMeta
		data []byte
	)
	if r.kind.Secret {
		sec, err := r.store.client.CoreV1().Secrets(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, r.readErr(name, err)
		}
		meta, data = sec.ObjectMeta, sec.Data[r.kind.Key]
	} else {
		cm, err := r.store.ConfigMaps().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, r.readErr(name, err)
		}
		meta, data = cm.ObjectMeta, cm.BinaryData[r.kind.Key]
	}
	return r.Decode(meta, data)
}

func (r *Records[T]) readErr(name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s/%s: %w", r.kind.What, Namespace, name, ErrNotFound)
	}
	return fmt.Errorf("reading %s %s/%s: %w", r.kind.What, Namespace, name, err)
}

// Decode unpacks one record's data.
func (r *Records[T]) Decode(meta metav1.ObjectMeta, data []byte) (*Record[T], error) {
	var v T
	if err := Unpack(data, &v); err != nil {
		return nil, fmt.Errorf("reading %s %s/%s: %w", r.kind.What, Namespace, meta.Name, err)
	}
	return &Record[T]{Value: &v, Meta: meta}, nil
}

// DecodeConfigMap unpacks a record met in a watch.
func (r *Records[T]) DecodeConfigMap(cm *corev1.ConfigMap) (*Record[T], error) {
	return r.Decode(cm.ObjectMeta, cm.BinaryData[r.kind.Key])
}

// List returns the records matching the label selector, sorted by cmp
// when it is not nil, and the list's resource version (to watch from).
// A missing namespace is an empty list.
func (r *Records[T]) List(ctx context.Context, selector string, cmp func(a, b *T) int) ([]*Record[T], string, error) {
	opts := metav1.ListOptions{LabelSelector: selector}
	var (
		out []*Record[T]
		rv  string
	)
	add := func(meta metav1.ObjectMeta, data []byte) error {
		rec, err := r.Decode(meta, data)
		if err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	}
	if r.kind.Secret {
		list, err := r.store.client.CoreV1().Secrets(Namespace).List(ctx, opts)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, "", fmt.Errorf("listing %s records: %w", r.kind.What, err)
		}
		if list != nil {
			rv = list.ResourceVersion
			for i := range list.Items {
				if r.kind.Type != "" && list.Items[i].Type != r.kind.Type {
					continue
				}
				if err := add(list.Items[i].ObjectMeta, list.Items[i].Data[r.kind.Key]); err != nil {
					return nil, "", err
				}
			}
		}
	} else {
		list, err := r.store.ConfigMaps().List(ctx, opts)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, "", fmt.Errorf("listing %s records: %w", r.kind.What, err)
		}
		if list != nil {
			rv = list.ResourceVersion
			for i := range list.Items {
				if err := add(list.Items[i].ObjectMeta, list.Items[i].BinaryData[r.kind.Key]); err != nil {
					return nil, "", err
				}
			}
		}
	}
	if cmp != nil {
		slices.SortFunc(out, func(a, b *Record[T]) int { return cmp(a.Value, b.Value) })
	}
	return out, rv, nil
}

// Values returns the records' values, in order.
func Values[T any](recs []*Record[T]) []*T {
	out := make([]*T, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// PutData creates or replaces the plain ConfigMap name holding data: a
// small request many readers watch, with a single writer.
func (s *Store) PutData(ctx context.Context, name string, data map[string]string) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{LabelManagedBy: "hitless"}},
		Data:       data,
	}
	return transient.Retry(ctx, func() error {
		_, err := s.ConfigMaps().Update(ctx, cm, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			err = s.creating(ctx, func() error {
				_, err := s.ConfigMaps().Create(ctx, cm, metav1.CreateOptions{})
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("writing %s/%s: %w", Namespace, name, err)
		}
		return nil
	})
}

// NewID names a record: kind, the UTC time to the second and a random
// suffix ("roll-20261202-101500-3fa2").
func NewID(kind string, now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%s", kind, now.UTC().Format("20060102-150405"), hex.EncodeToString(b))
}
