package localcluster

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Well-known labels and annotations a kubelet, a cloud provider and KWOK set.
const (
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
	LabelWorker       = "node-role.kubernetes.io/worker"
	LabelZone         = "topology.kubernetes.io/zone"
	LabelRegion       = "topology.kubernetes.io/region"
	AnnotationKwok    = "kwok.x-k8s.io/node"
	// Region is the topology.kubernetes.io/region of every local node.
	Region = "local"
)

// Zones are the topology.kubernetes.io/zone values local nodes spread over.
var zones = [...]string{"local-a", "local-b", "local-c"}

// NodeSpec describes a node to create.
type NodeSpec struct {
	Name         string
	ControlPlane bool
	// Index numbers the node within the cluster; it picks the node's zone,
	// InternalIP and pod CIDR, so it must be unique.
	Index  int
	Labels map[string]string
	// Capacity overrides the default 4 CPU, 16Gi, 110 pods.
	Capacity corev1.ResourceList
}

// DefaultCapacity is what every local node reports unless told otherwise.
func DefaultCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("16Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
}

// NodeIP returns the InternalIP of the node with the given index.
func NodeIP(index int) string {
	base := netip.MustParsePrefix(nodeNetwork).Addr().As4()
	n := index + 10
	base[2] = byte(n / 250)
	base[3] = byte(n%250 + 2)
	return netip.AddrFrom4(base).String()
}

// podCIDR returns the /24 of the node with the given index inside clusterCIDR.
func podCIDR(index int) string {
	return fmt.Sprintf("10.%d.%d.0/24", 128+index/256, index%256)
}

// NewNode builds a KWOK node that looks like a kubelet registered it.
func NewNode(spec NodeSpec) *corev1.Node {
	capacity := spec.Capacity
	if capacity == nil {
		capacity = DefaultCapacity()
	}
	allocatable := capacity.DeepCopy()
	// Like a kubelet with system and kube reservations.
	if cpu, ok := allocatable[corev1.ResourceCPU]; ok && cpu.MilliValue() > 200 {
		cpu.Sub(resource.MustParse("100m"))
		allocatable[corev1.ResourceCPU] = cpu
	}
	if mem, ok := allocatable[corev1.ResourceMemory]; ok && mem.Value() > 1<<30 {
		mem.Sub(resource.MustParse("512Mi"))
		allocatable[corev1.ResourceMemory] = mem
	}
	labels := map[string]string{
		corev1.LabelHostname:           spec.Name,
		corev1.LabelOSStable:           "linux",
		corev1.LabelArchStable:         "amd64",
		"beta.kubernetes.io/os":        "linux",
		"beta.kubernetes.io/arch":      "amd64",
		LabelZone:                      zones[spec.Index%len(zones)],
		LabelRegion:                    Region,
		corev1.LabelInstanceTypeStable: "kwok.4c16g",
		"type":                         "kwok",
	}
	var taints []corev1.Taint
	if spec.ControlPlane {
		labels[LabelControlPlane] = ""
		taints = append(taints, corev1.Taint{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule})
	} else {
		labels[LabelWorker] = ""
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	cidr := podCIDR(spec.Index)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        spec.Name,
			Labels:      labels,
			Annotations: map[string]string{AnnotationKwok: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:    cidr,
			PodCIDRs:   []string{cidr},
			ProviderID: "kwok://" + spec.Name,
			Taints:     taints,
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: allocatable,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: NodeIP(spec.Index)},
				{Type: corev1.NodeHostName, Address: spec.Name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               fmt.Sprintf("%032x", spec.Index+1),
				SystemUUID:              fmt.Sprintf("00000000-0000-0000-0000-%012d", spec.Index+1),
				BootID:                  fmt.Sprintf("b0000000-0000-0000-0000-%012d", spec.Index+1),
				KernelVersion:           "6.1.0-28-amd64",
				OSImage:                 "Debian GNU/Linux 12 (bookworm)",
				ContainerRuntimeVersion: "containerd://2.1.4",
				KubeletVersion:          "v1.37.2",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
			Phase: corev1.NodeRunning,
		},
	}
}

// WorkerName and ControlPlaneName name the nodes `cluster up` creates.
func WorkerName(cluster string, i int) string { return cluster + "-worker-" + strconv.Itoa(i) }

// ControlPlaneName names the i-th control-plane node (from 1).
func ControlPlaneName(cluster string, i int) string {
	return cluster + "-control-plane-" + strconv.Itoa(i)
}

// CreateNodes creates the nodes concurrently. An existing node of the same
// name is left as it is.
func CreateNodes(ctx context.Context, cs kubernetes.Interface, specs []NodeSpec) error {
	const workers = 32
	jobs := make(chan NodeSpec)
	errs := make(chan error, len(specs))
	var wg sync.WaitGroup
	for range min(workers, len(specs)) {
		wg.Go(func() {
			for s := range jobs {
				_, err := cs.CoreV1().Nodes().Create(ctx, NewNode(s), metav1.CreateOptions{})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					errs <- fmt.Errorf("creating node %s: %w", s.Name, err)
				}
			}
		})
	}
	for _, s := range specs {
		select {
		case jobs <- s:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return ctx.Err()
}
