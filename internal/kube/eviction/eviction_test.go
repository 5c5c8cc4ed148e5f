package eviction_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/kubectl/pkg/drain"
	"k8s.io/utils/ptr"

	"github.com/hitless-dev/hitless/internal/kube/eviction"
)

func owned(kind string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + kind, Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if kind != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: "owner", APIVersion: "v1", UID: "u", Controller: ptr.To(true)}}
	}
	return p
}

// One answer to "unmanaged" (seed 003's rule): the preflight's check, the
// plan's blockers and the drain itself agree on every owner kind.
func TestUnmanagedIsOneRule(t *testing.T) {
	tests := []struct {
		kind    string
		managed bool
	}{
		{"ReplicaSet", true}, {"ReplicationController", true}, {"Job", true}, {"StatefulSet", true}, {"DaemonSet", true},
		{"", false}, {"VirtualMachineInstance", false}, {"TaskRun", false}, {"Deployment", false},
	}
	for _, tc := range tests {
		t.Run("owner "+tc.kind, func(t *testing.T) {
			p := owned(tc.kind)
			if got := eviction.Managed(p); got != tc.managed {
				t.Errorf("Managed = %v, want %v", got, tc.managed)
			}
			d := eviction.Classify(p, eviction.Options{})
			blocked := d.Blocker != nil && d.Blocker.Kind == eviction.BlockUnmanaged
			if blocked == tc.managed {
				t.Errorf("Classify = %+v: blocked as unmanaged %v, want %v", d, blocked, !tc.managed)
			}
			if forced := eviction.Classify(p, eviction.Options{Force: true}); !tc.managed && !forced.Evict {
				t.Errorf("with Force, Classify = %+v, want evict", forced)
			}
			// The drain: kubectl's helper with hitless's filter refuses
			// exactly the pods the plan blocks.
			h := &drain.Helper{Client: fake.NewClientset(p), IgnoreAllDaemonSets: true, AdditionalFilters: []drain.PodFilter{eviction.Filter(eviction.Options{})}}
			_, errs := h.GetPodsForDeletion("n1")
			if refused := len(errs) > 0; refused == tc.managed {
				t.Errorf("drain refused = %v (%v), want %v", refused, errs, !tc.managed)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	withEmptyDir := owned("ReplicaSet")
	withEmptyDir.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mirror := owned("")
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	done := owned("")
	done.Status.Phase = corev1.PodSucceeded
	tests := []struct {
		name             string
		pod              *corev1.Pod
		opts             eviction.Options
		evict, ds, block bool
	}{
		{"a ReplicaSet's pod is evicted", owned("ReplicaSet"), eviction.Options{}, true, false, false},
		{"a DaemonSet's pod stays", owned("DaemonSet"), eviction.Options{}, false, true, false},
		{"a mirror pod stays", mirror, eviction.Options{}, false, false, false},
		{"a finished pod goes", done, eviction.Options{}, true, false, false},
		{"emptyDir data blocks", withEmptyDir, eviction.Options{}, false, false, true},
		{"emptyDir data allowed", withEmptyDir, eviction.Options{DeleteEmptyDirData: true}, true, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := eviction.Classify(tc.pod, tc.opts)
			if d.Evict != tc.evict || d.DaemonSet != tc.ds || (d.Blocker != nil) != tc.block {
				t.Errorf("Classify = %+v, want evict %v, daemonset %v, blocker %v", d, tc.evict, tc.ds, tc.block)
			}
		})
	}
}

func TestPinned(t *testing.T) {
	nodes := []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"disk": "ssd"}}}, {ObjectMeta: metav1.ObjectMeta{Name: "n2"}}}
	affinity := owned("ReplicaSet")
	affinity.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"}}}}}}}}
	hostname := owned("ReplicaSet")
	hostname.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "n2"}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		pinned bool
	}{
		{"free to move", owned("ReplicaSet"), false},
		{"no controller", owned(""), true},
		{"hostname selector", hostname, true},
		{"affinity one node satisfies", affinity, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := eviction.Pinned(tc.pod, nodes, nil); (got != "") != tc.pinned {
				t.Errorf("Pinned = %q, want pinned %v", got, tc.pinned)
			}
		})
	}
}
