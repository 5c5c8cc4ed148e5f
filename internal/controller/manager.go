package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/lock"
	"github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/roll"
)

// LeaderElectionID is the Lease the controllers elect their leader with,
// in hitless-system beside the operation lock.
const LeaderElectionID = "hitless-controller"

// DefaultHookNamespace is where the controller runs Jobs (the job action,
// a NodeRoll's Job hooks) unless told otherwise: a namespace of its own,
// so that whoever may create a NodeRoll can run pods only under the
// ServiceAccounts an administrator put there.
const DefaultHookNamespace = "hitless-hooks"

// Options configure Run.
type Options struct {
	// MetricsAddr serves /metrics ("0" for none).
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz ("0" for none).
	HealthAddr string
	// LeaderElection makes one of several controllers act at a time.
	LeaderElection bool
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election
	// (defaults 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ComponentResync is how often a settled Component's source is read
	// again (default 1m).
	ComponentResync time.Duration
	// MigrationRetry is how soon a Migration a gate or a wait paused is
	// run again (default 1m).
	MigrationRetry time.Duration
	// Actions are the per-node actions NodeRolls and the Migrations' roll
	// steps may name; nil is migrate.Actions without exec. Their job
	// action is pinned to HookNamespace.
	Actions *roll.Actions
	// HookNamespace is the only namespace the job action and the NodeRolls'
	// Job hooks run Jobs in (default hitless-hooks).
	HookNamespace string
	// Ready, when set, is closed once the controller leads (or runs
	// without an election) and its caches are synced.
	Ready chan<- struct{}
}

// Scheme is the types the controller reads: Kubernetes' own and hitless.dev.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	mopts := ctrl.Options{
		Scheme:                        scheme,
		Logger:                        klog.FromContext(ctx),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.HealthAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       lock.Namespace,
		LeaderElectionReleaseOnCancel: true,
		// Only what the controller acts on is cached: its resources. The
		// engines read nodes, pods and PDBs with their own informers and
		// calls, scoped to an operation.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&v1alpha1.NodeRoll{}: {}, &v1alpha1.Component{}: {}, &v1alpha1.Migration{}: {}}},
	}
	if opts.LeaseDuration > 0 {
		mopts.LeaseDuration = &opts.LeaseDuration
	}
	if opts.RenewDeadline > 0 {
		mopts.RenewDeadline = &opts.RenewDeadline
	}
	if opts.RetryPeriod > 0 {
		mopts.RetryPeriod = &opts.RetryPeriod
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	m, err := NewMetrics(ctrlmetrics.Registry, kube)
	if err != nil {
		return fmt.Errorf("registering the metrics: %w", err)
	}
	if opts.HookNamespace == "" {
		opts.HookNamespace = DefaultHookNamespace
	}
	if opts.Actions == nil {
		opts.Actions = migrate.Actions().Without(roll.ActionExec)
	}
	opts.Actions = opts.Actions.Replace(roll.JobActionType(opts.HookNamespace))
	rolls := &NodeRolls{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Kube: kube, Events: mgr.GetEventRecorder("hitless-controller"), Actions: opts.Actions, Metrics: m}
	if err := rolls.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the NodeRoll controller: %w", err)
	}
	comps := &Components{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Kube: kube, Config: cfg, Events: mgr.GetEventRecorder("hitless-controller"), Metrics: m, Resync: opts.ComponentResync}
	if err := comps.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Component controller: %w", err)
	}
	migrations := &Migrations{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Kube: kube, Config: cfg, Events: mgr.GetEventRecorder("hitless-controller"), Metrics: m, Actions: opts.Actions, Retry: opts.MigrationRetry}
	if err := migrations.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Migration controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	if opts.Ready != nil {
		go func() {
			select {
			case <-mgr.Elected():
			case <-ctx.Done():
				return
			}
			if mgr.GetCache().WaitForCacheSync(ctx) {
				close(opts.Ready)
			}
		}()
	}
	return mgr.Start(ctx)
}
