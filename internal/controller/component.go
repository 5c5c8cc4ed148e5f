package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Reasons of a Component's conditions and Events, beside the NodeRoll's.
const (
	reasonInstalled      = "Installed"
	reasonUpgraded       = "Upgraded"
	reasonDeploying      = "Deploying"
	reasonInvalidSource  = "InvalidSource"
	reasonSourceNotFound = "SourceNotFound"
	reasonConflicts      = "Conflicts"
	reasonBudget         = "BudgetExceeded"
	reasonRolledBack     = "RolledBack"
	reasonDeployFailed   = "DeployFailed"
)

// Components reconciles Components: the component's release installed or
// upgraded by the lifecycle engine, in the background, when its source or
// spec changes.
type Components struct {
	Client client.Client
	// Reader reads from the API server, not the cache: whether the release
	// is settled is read afresh before an operation starts (nil: Client).
	Reader  client.Reader
	Kube    kubernetes.Interface
	Config  *rest.Config
	Events  events.EventRecorder
	Metrics *Metrics
	// Resync is how often a settled Component's source is read again, to
	// see a ConfigMap or Secret changed in place (default 1m).
	Resync time.Duration
	// StatusEvery is the pause between status writes while an operation
	// runs (default 1s).
	StatusEvery time.Duration

	*runs
	bundles sync.Map // UID: the *bundle last loaded (an artifact is not pulled again at the same digest)
}

func (r *Components) lastBundle(uid types.UID) *bundle {
	if b, ok := r.bundles.Load(uid); ok {
		return b.(*bundle)
	}
	return nil
}

func (r *Components) keepBundle(uid types.UID, b *bundle) { r.bundles.Store(uid, b) }

// SetupWithManager registers the reconciler and its runs' runnable.
func (r *Components) SetupWithManager(mgr ctrl.Manager) error {
	if r.Resync == 0 {
		r.Resync = time.Minute
	}
	if r.StatusEvery == 0 {
		r.StatusEvery = time.Second
	}
	r.runs = newRuns()
	return r.watch(mgr, &v1alpha1.Component{}, "component", r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Components) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &v1alpha1.Component{}
	if ok, err := admit(ctx, r.Client, req, c, func(ctx context.Context) error { return r.delete(ctx, c) }); !ok {
		return ctrl.Result{}, err
	}
	if r.running(c.UID) {
		return ctrl.Result{}, nil
	}
	// The cache may not have seen the status the last operation wrote:
	// neither that status be written over nor that operation run again.
	fresh := &v1alpha1.Component{}
	if err := reader(r.Reader, r.Client).Get(ctx, req.NamespacedName, fresh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if fresh.ResourceVersion != c.ResourceVersion {
		return ctrl.Result{Requeue: true}, nil // a newer version is on its way to the cache
	}
	b, err := loadBundle(ctx, r.Kube, c, r.lastBundle(c.UID))
	if err != nil {
		return r.refuse(ctx, c, err)
	}
	r.keepBundle(c.UID, b)
	opts, target, err := componentOptions(c, b)
	if err != nil {
		return r.refuse(ctx, c, err)
	}
	if settled(c, target) {
		// Nothing to do for this generation: say so (a follower waits for
		// the status to be about the generation it wrote).
		return ctrl.Result{RequeueAfter: r.Resync}, r.patchStatus(ctx, c, func(st *v1alpha1.ComponentStatus) {
			for i := range st.Conditions {
				st.Conditions[i].ObservedGeneration = c.Generation
			}
		})
	}
	if c.Spec.Paused {
		return ctrl.Result{RequeueAfter: r.Resync}, r.patchStatus(ctx, c, func(st *v1alpha1.ComponentStatus) {
			if cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionPaused); st.Phase == v1alpha1.PhasePaused && cond != nil && cond.Reason == reasonPaused {
				return // the operation's own words: where it stopped
			}
			st.Phase = v1alpha1.PhasePaused
			setConditions(&st.Conditions, c.Generation, v1alpha1.ConditionPaused, reasonPaused, "spec.paused is true: the release waits; clear it to go on")
		})
	}
	revs, err := release.NewStore(r.Kube).List(ctx, c.Name)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("reading the revisions of %s: %w", c.Name, err)
	}
	action := lifecycle.ActionUpgrade
	if release.Current(revs) == nil {
		action = lifecycle.ActionInstall
	}
	return ctrl.Result{}, r.start(c, action, opts, target, b.resolved)
}

// refuse writes a source or spec the controller cannot use into the
// status: Failed naming the field, nothing changed; a missing source is
// looked for again.
func (r *Components) refuse(ctx context.Context, c *v1alpha1.Component, err error) (ctrl.Result, error) {
	reason, after, ok := refusal(err, r.Resync)
	if !ok {
		return ctrl.Result{}, err
	}
	msg := err.Error() + "; nothing was changed"
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionFailed); cond == nil || cond.Reason != reason || cond.Message != msg {
		r.Events.Eventf(c, nil, corev1.EventTypeWarning, reason, "Validate", "%s", msg)
	}
	return ctrl.Result{RequeueAfter: after}, r.patchStatus(ctx, c, func(st *v1alpha1.ComponentStatus) {
		st.Phase = v1alpha1.PhaseFailed
		setConditions(&st.Conditions, c.Generation, v1alpha1.ConditionFailed, reason, msg)
	})
}

// settled says whether the Component needs nothing: the release of target
// is deployed, or was rolled back, or its operation failed or paused on a
// verdict (conflicts, a budget) and the spec has not changed since.
func settled(c *v1alpha1.Component, target string) bool {
	if c.Status.Digest != target {
		return false
	}
	switch c.Status.Phase {
	case v1alpha1.PhaseReady, v1alpha1.PhaseRolledBack:
		return true
	case v1alpha1.PhaseFailed, v1alpha1.PhasePaused:
		for _, t := range []string{v1alpha1.ConditionFailed, v1alpha1.ConditionPaused} {
			cond := meta.FindStatusCondition(c.Status.Conditions, t)
			if cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason != reasonError && cond.Reason != reasonPaused && cond.ObservedGeneration == c.Generation {
				return true
			}
		}
	}
	return false
}

// componentOptions turns the Component into the lifecycle engine's
// options, and the digest of what shapes the release (the source and
// those fields; not the probe budget, paused or the rollback policy).
func componentOptions(c *v1alpha1.Component, b *bundle) (lifecycle.Options, string, error) {
	in := c.Spec
	opts := lifecycle.Options{
		Name:          c.Name,
		Source:        b.source,
		Chart:         b.chart,
		Namespace:     "default",
		DataPlane:     in.DataPlane,
		NodeSelectors: in.NodeSelectors,
		Prefer:        component.Prefer(in.Prefer),
		MixedVersions: in.AllowMixedVersions,
		Profile:       in.Profile,
		Wait:          duration(in.Wait),
		Command:       fmt.Sprintf("Component %s (hitless controller)", c.Name),
	}
	switch in.Batch.Type {
	case intstr.Int:
		opts.Batch = strconv.Itoa(int(in.Batch.IntVal))
	default:
		opts.Batch = in.Batch.StrVal
	}
	if in.Values != nil && len(in.Values.Raw) > 0 {
		if b.chart == nil {
			return opts, "", &FieldError{Field: "spec.values", Msg: b.name + " holds manifests, not a Helm chart: values are for charts"}
		}
		if err := json.Unmarshal(in.Values.Raw, &opts.Values); err != nil {
			return opts, "", &FieldError{Field: "spec.values", Msg: "want an object: " + err.Error()}
		}
	}
	if _, err := probeSpec(in.Probe); err != nil {
		return opts, "", err
	}
	shape := struct {
		Source, Batch, Prefer, Profile string
		DataPlane, NodeSelectors       []string
		Mixed                          bool
		Values                         map[string]any
	}{b.digest, opts.Batch, in.Prefer, in.Profile, in.DataPlane, in.NodeSelectors, in.AllowMixedVersions, opts.Values}
	return opts, operation.Hash(shape), nil
}
