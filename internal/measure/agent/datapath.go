package agent

import (
	"context"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// AnnotationDataPlane marks a DaemonSet as the network's data plane.
const AnnotationDataPlane = "hitless.dev/data-plane"

// realDaemon reports whether the lab kubelet runs the pod's real daemon
// (its condition hitless.dev/LabKubelet says so): its data path is
// real, not modeled.
func realDaemon(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == labKubelet {
			return true
		}
	}
	return false
}

// labKubelet is the lab kubelet's pod condition (kubelet.ConditionLabKubelet).
const labKubelet corev1.PodConditionType = "hitless.dev/LabKubelet"

// followDataPlane couples the lab node's link to its data plane, as a
// real node's traffic depends on its vRouter or CNI agent: once a
// data-plane pod (of a DaemonSet annotated hitless.dev/data-plane=true)
// has run on the node, the link is up only while one is Ready and not
// being deleted. Only in the lab, where the agent owns the node's
// namespace.
func (a *Agent) followDataPlane(ctx context.Context) {
	log := klog.FromContext(ctx).WithValues("node", a.opts.Node)
	pods := informers.NewSharedInformerFactoryWithOptions(a.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.opts.Node).String()
	}))
	dss := informers.NewSharedInformerFactory(a.cs, 0)
	podInf, dsInf := pods.Core().V1().Pods(), dss.Apps().V1().DaemonSets()
	seen := false
	up := true
	follow := func() {
		list, _ := podInf.Lister().List(labels.Everything())
		ready := false
		for _, p := range list {
			c := metav1.GetControllerOf(p)
			if c == nil || c.Kind != "DaemonSet" {
				continue
			}
			ds, err := dsInf.Lister().DaemonSets(p.Namespace).Get(c.Name)
			if err != nil || !dataPlane(ds) || realDaemon(p) {
				continue
			}
			seen = true
			if p.DeletionTimestamp == nil && podutils.IsPodReady(p) {
				ready = true
			}
		}
		want := !seen || ready
		if want == up {
			return
		}
		if err := lab.SetLinkIn(a.opts.NetNS, want); err != nil {
			log.Error(err, "following the data plane")
			return
		}
		up = want
		log.V(1).Info("data path follows the data plane", "up", up, "at", time.Now().Format("15:04:05.000"))
	}
	var mu sync.Mutex
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		follow()
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { resync() },
		UpdateFunc: func(any, any) { resync() },
		DeleteFunc: func(any) { resync() },
	}
	_, _ = podInf.Informer().AddEventHandler(handler)
	_, _ = dsInf.Informer().AddEventHandler(handler)
	pods.Start(ctx.Done())
	dss.Start(ctx.Done())
	<-ctx.Done()
	pods.Shutdown()
	dss.Shutdown()
	if !up {
		_ = lab.SetLinkIn(a.opts.NetNS, true)
	}
}

func dataPlane(ds *appsv1.DaemonSet) bool { return ds.Annotations[AnnotationDataPlane] == "true" }
