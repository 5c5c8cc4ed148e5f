package controller

// The controller's permissions, what it and the roll engine it runs need
// and no more; controller-gen writes them into config/rbac/role.yaml
// (hack/gen.sh). Nodes are patched (cordon and mark in one write), never
// deleted; pods are evicted through the Eviction API, and deleted only
// for a drain with `force` (pods no controller manages) or the
// restart-daemonset action; Secrets are never read. The journal, the lock
// and the leader election live in hitless-system; the Jobs of the job
// action and the NodeRolls' Job hooks run in hitless-hooks, whose
// ServiceAccounts an administrator chooses (the controller's own are not
// there): the only namespaces the controller writes to.
//
// +kubebuilder:rbac:groups=hitless.dev,resources=noderolls,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=noderolls/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=noderolls/finalizers,verbs=update
// +kubebuilder:rbac:groups=hitless.dev,resources=components,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=components/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=components/finalizers,verbs=update
// +kubebuilder:rbac:groups=hitless.dev,resources=migrations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=migrations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=hitless.dev,resources=migrations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get,resourceNames=hitless-system
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete,namespace=hitless-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete,namespace=hitless-system
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete,namespace=hitless-hooks
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get,namespace=hitless-hooks
