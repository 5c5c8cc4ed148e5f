package snapshot

import (
	"context"
	"fmt"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"
)

// PageSize is the LIST page size: large, so a 5,000-node cluster's nodes
// come in one request.
const PageSize = 5000

// Resources read through the dynamic client.
var (
	APIServices        = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	ClusterOperators   = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "clusteroperators"}
	MachineConfigPools = schema.GroupVersionResource{Group: "machineconfiguration.openshift.io", Version: "v1", Resource: "machineconfigpools"}
	NetworkConfigs     = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "networks"}
)

// Snapshot is the cluster as the checks see it. Errs holds the reads that
// failed, by resource; a check that needs one reports an error result.
type Snapshot struct {
	Taken         time.Time
	ServerVersion *version.Info
	Readyz        string

	Nodes        []corev1.Node
	Pods         []corev1.Pod
	PDBs         []policyv1.PodDisruptionBudget
	Deployments  []appsv1.Deployment
	StatefulSets []appsv1.StatefulSet
	DaemonSets   []appsv1.DaemonSet
	PVs          []corev1.PersistentVolume
	PVCs         []corev1.PersistentVolumeClaim
	// KubernetesService is default/kubernetes; DNSService is
	// kube-system/kube-dns, nil when the cluster has no DNS.
	KubernetesService *corev1.Service
	DNSService        *corev1.Service

	APIServices []unstructured.Unstructured
	// Admission webhooks: what every write the operation makes passes
	// through.
	ValidatingWebhooks []admissionv1.ValidatingWebhookConfiguration
	MutatingWebhooks   []admissionv1.MutatingWebhookConfiguration
	// OpenShift lists are nil when the API does not exist.
	ClusterOperators   []unstructured.Unstructured
	MachineConfigPools []unstructured.Unstructured
	NetworkConfigs     []unstructured.Unstructured

	Errs map[string]error
}

// Err returns the error reading resource, or nil.
func (s *Snapshot) Err(resource ...string) error {
	for _, r := range resource {
		if err := s.Errs[r]; err != nil {
			return err
		}
	}
	return nil
}

// Take reads the snapshot. It fails only when nothing at all can be
// read; individual failures are in Errs.
func Take(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) (*Snapshot, error) {
	s := &Snapshot{Taken: time.Now(), Errs: map[string]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	read := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				s.Errs[name] = fmt.Errorf("reading %s: %w", name, err)
				mu.Unlock()
			}
		})
	}
	read("version", func() (err error) { s.ServerVersion, err = cs.Discovery().ServerVersion(); return err })
	read("readyz", func() error {
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "").DoRaw(ctx)
		s.Readyz = string(b)
		return err
	})
	read("nodes", func() (err error) {
		s.Nodes, err = list[corev1.Node](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Nodes().List(ctx, o)
		})
		return err
	})
	read("pods", func() (err error) {
		s.Pods, err = list[corev1.Pod](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("poddisruptionbudgets", func() (err error) {
		s.PDBs, err = list[policyv1.PodDisruptionBudget](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("deployments", func() (err error) {
		s.Deployments, err = list[appsv1.Deployment](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("statefulsets", func() (err error) {
		s.StatefulSets, err = list[appsv1.StatefulSet](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().StatefulSets(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("daemonsets", func() (err error) {
		s.DaemonSets, err = list[appsv1.DaemonSet](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().DaemonSets(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("persistentvolumes", func() (err error) {
		s.PVs, err = list[corev1.PersistentVolume](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().PersistentVolumes().List(ctx, o)
		})
		return err
	})
	read("persistentvolumeclaims", func() (err error) {
		s.PVCs, err = list[corev1.PersistentVolumeClaim](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().PersistentVolumeClaims(metav1.NamespaceAll).List(ctx, o)
		})
		return err
	})
	read("services", func() error {
		svc, err := cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.KubernetesService = svc
		dns, err := cs.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, "kube-dns", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		s.DNSService = dns
		return err
	})
	read("webhooks", func() (err error) {
		s.ValidatingWebhooks, err = list[admissionv1.ValidatingWebhookConfiguration](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, o)
		})
		if err != nil {
			return err
		}
		s.MutatingWebhooks, err = list[admissionv1.MutatingWebhookConfiguration](ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, o)
		})
		return err
	})
	read("apiservices", func() (err error) {
		s.APIServices, _, err = listDynamic(ctx, dyn, APIServices)
		return err
	})
	for _, l := range []struct {
		name string
		gvr  schema.GroupVersionResource
		into *[]unstructured.Unstructured
	}{
		{"clusteroperators", ClusterOperators, &s.ClusterOperators},
		{"machineconfigpools", MachineConfigPools, &s.MachineConfigPools},
		{"networks.config", NetworkConfigs, &s.NetworkConfigs},
	} {
		read(l.name, func() error {
			items, found, err := listDynamic(ctx, dyn, l.gvr)
			if found {
				*l.into = items
			}
			return err
		})
	}
	wg.Wait()
	if s.Errs["nodes"] != nil && s.Errs["pods"] != nil && s.Errs["version"] != nil {
		return nil, s.Errs["nodes"]
	}
	return s, nil
}

// list pages through a typed LIST, PageSize items at a time.
func list[T any](ctx context.Context, f func(context.Context, metav1.ListOptions) (runtime.Object, error)) ([]T, error) {
	p := pager.New(pager.SimplePageFunc(func(o metav1.ListOptions) (runtime.Object, error) { return f(ctx, o) }))
	p.PageSize = PageSize
	var out []T
	err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		item, ok := any(obj).(*T)
		if !ok {
			return fmt.Errorf("unexpected list item %T", obj)
		}
		out = append(out, *item)
		return nil
	})
	return out, err
}

// listDynamic lists gvr; found is false when the API does not exist.
func listDynamic(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource) (items []unstructured.Unstructured, found bool, err error) {
	l, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: PageSize})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return l.Items, true, nil
}
