package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// LabelComponent marks the ConfigMap bundles `--in-cluster` commands
// create with their component's name.
const LabelComponent = "hitless.dev/component"

// MaxBundle bounds a bundle's files: a ConfigMap holds at most 1 MiB.
const MaxBundle = 1000 * 1024

// BundleFor is the ConfigMap bundle of a release's files for component:
// named from the component and the files' digest (the same files make
// the same bundle), immutable, in hitless-system. Files whose name ends
// in .tgz (a packaged chart) go to binaryData.
func BundleFor(component string, files map[string][]byte) (*corev1.ConfigMap, error) {
	names := make([]string, 0, len(files))
	size := 0
	for k, v := range files {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return nil, &operation.FieldError{Field: "filename", Msg: fmt.Sprintf("%q cannot be a ConfigMap key: %s", k, strings.Join(errs, "; "))}
		}
		names = append(names, k)
		size += len(k) + len(v)
	}
	if len(names) == 0 {
		return nil, &operation.FieldError{Field: "filename", Msg: "no file to put in the bundle"}
	}
	if size > MaxBundle {
		return nil, &operation.FieldError{Field: "filename", Msg: fmt.Sprintf("%d bytes: a ConfigMap bundle holds at most %d", size, MaxBundle)}
	}
	slices.Sort(names)
	h := sha256.New()
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: lock.Namespace, Labels: map[string]string{LabelComponent: component}},
		Immutable:  ptr.To(true),
	}
	for _, k := range names {
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00", k, len(files[k]))
		h.Write(files[k])
		if strings.HasSuffix(k, ".tgz") {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[k] = files[k]
			continue
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[k] = string(files[k])
	}
	cm.Name = component + "-" + hex.EncodeToString(h.Sum(nil))[:10]
	return cm, nil
}

// PutComponent creates the bundle unless it is there, then creates the
// Component or sets its spec to spec: what `--in-cluster` component
// commands do. It returns the Component as written.
//
// The Component's write is tried first as a server-side dry run, so that
// one admission refuses (returned as is: apierrors.IsInvalid) leaves no
// bundle behind.
func PutComponent(ctx context.Context, c client.Client, kube kubernetes.Interface, bundle *corev1.ConfigMap, name string, spec v1alpha1.ComponentSpec) (*v1alpha1.Component, bool, error) {
	spec.Source = v1alpha1.ComponentSource{ConfigMap: &v1alpha1.BundleRef{Name: bundle.Name}}
	return put(ctx, c, kube, []*corev1.ConfigMap{bundle}, func() *v1alpha1.Component {
		return &v1alpha1.Component{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion().String(), Kind: "Component"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       spec,
		}
	}, func(live *v1alpha1.Component) { live.Spec = spec })
}

// put creates the resource fresh() makes or, when one of its name is
// there, sets its spec (setSpec), with the bundles it names created
// first; the write is tried as a server-side dry run before anything, so
// that an admission refusal (returned as is: apierrors.IsInvalid) leaves
// no bundle behind.
func put[T client.Object](ctx context.Context, c client.Client, kube kubernetes.Interface, bundles []*corev1.ConfigMap, fresh func() T, setSpec func(T)) (T, bool, error) {
	write := func(dry bool) (T, bool, error) {
		obj := fresh()
		var zero T
		var copts []client.CreateOption
		var popts []client.PatchOption
		if dry {
			copts, popts = append(copts, client.DryRunAll), append(popts, client.DryRunAll)
		}
		err := c.Create(ctx, obj, copts...)
		if err == nil {
			return obj, true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return zero, false, fmt.Errorf("creating %s %s: %w", kindOf(obj), obj.GetName(), err)
		}
		live := fresh()
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
			return zero, false, fmt.Errorf("reading %s %s: %w", kindOf(obj), obj.GetName(), err)
		}
		patch := client.MergeFrom(live.DeepCopyObject().(client.Object))
		setSpec(live)
		if err := c.Patch(ctx, live, patch, popts...); err != nil {
			return zero, false, fmt.Errorf("updating %s %s: %w", kindOf(obj), obj.GetName(), err)
		}
		return live, false, nil
	}
	if _, _, err := write(true); err != nil {
		var zero T
		return zero, false, err
	}
	for _, b := range bundles {
		if _, err := kube.CoreV1().ConfigMaps(b.Namespace).Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			var zero T
			return zero, false, fmt.Errorf("creating the bundle ConfigMap %s/%s: %w", b.Namespace, b.Name, err)
		}
	}
	return write(false)
}

// ComponentOver says whether the Component's status is a verdict on its
// current generation: Ready, RolledBack, Failed, or Paused for a reason
// that is not an error tried again.
func ComponentOver(comp *v1alpha1.Component) bool {
	if comp.Status.ObservedGeneration != comp.Generation {
		return false
	}
	switch comp.Status.Phase {
	case v1alpha1.PhaseReady, v1alpha1.PhaseRolledBack, v1alpha1.PhaseFailed:
		return true
	case v1alpha1.PhasePaused:
		for _, c := range comp.Status.Conditions {
			if c.Type == v1alpha1.ConditionPaused && c.Status == metav1.ConditionTrue && c.Reason != reasonError {
				return true
			}
		}
	}
	return false
}

// FollowComponent reads the Component every interval until its status is
// a verdict on a generation at least gen (ComponentOver), calling changed
// whenever its status moved.
func FollowComponent(ctx context.Context, c client.Client, name string, gen int64, interval time.Duration, changed func(*v1alpha1.Component)) (*v1alpha1.Component, error) {
	return follow(ctx, c, name, interval, func() *v1alpha1.Component { return &v1alpha1.Component{} }, ComponentLine,
		func(comp *v1alpha1.Component) bool { return comp.Generation >= gen && ComponentOver(comp) }, changed)
}

// ComponentLine sums a Component's status up in a line.
func ComponentLine(comp *v1alpha1.Component) string {
	phase := comp.Status.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	parts := []string{phase}
	if comp.Status.Revision > 0 {
		parts = append(parts, fmt.Sprintf("revision %d (release %s)", comp.Status.Revision, comp.Status.Release))
	}
	for _, c := range comp.Status.Conditions {
		if c.Status == metav1.ConditionTrue && c.Type != v1alpha1.ConditionRolledBack {
			parts = append(parts, c.Reason+": "+c.Message)
		}
	}
	return strings.Join(parts, "; ")
}
