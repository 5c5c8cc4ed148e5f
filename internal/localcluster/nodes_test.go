package localcluster

import (
	"errors"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeAddressesAndPodCIDRsAreUniqueAtScale(t *testing.T) {
	ips, cidrs := map[string]int{}, map[string]int{}
	nodeNet := netip.MustParsePrefix(nodeNetwork)
	podNet := netip.MustParsePrefix(clusterCIDR)
	for i := range 10_001 {
		ip := NodeIP(i)
		if j, dup := ips[ip]; dup {
			t.Fatalf("nodes %d and %d share InternalIP %s", j, i, ip)
		}
		ips[ip] = i
		if a := netip.MustParseAddr(ip); !nodeNet.Contains(a) || a.As4()[3] < 2 || a.As4()[3] == 255 {
			t.Fatalf("node %d InternalIP %s is outside %s or a network/broadcast-like address", i, ip, nodeNetwork)
		}
		c := podCIDR(i)
		if j, dup := cidrs[c]; dup {
			t.Fatalf("nodes %d and %d share pod CIDR %s", j, i, c)
		}
		cidrs[c] = i
		if p := netip.MustParsePrefix(c); !podNet.Contains(p.Addr()) {
			t.Fatalf("node %d pod CIDR %s outside %s", i, c, clusterCIDR)
		}
	}
}

func TestNewNodeLooksKubeletRegistered(t *testing.T) {
	tests := []struct {
		name      string
		spec      NodeSpec
		role      string
		tainted   bool
		userLabel bool
	}{
		{"worker with user labels", NodeSpec{Name: "w-1", Index: 4, Labels: map[string]string{"pool": "blue"}}, LabelWorker, false, true},
		{"control plane is tainted", NodeSpec{Name: "cp-1", ControlPlane: true}, LabelControlPlane, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNode(tt.spec)
			if _, ok := n.Labels[tt.role]; !ok {
				t.Errorf("missing role label %s", tt.role)
			}
			if got := n.Labels[corev1.LabelHostname]; got != tt.spec.Name {
				t.Errorf("hostname label = %q", got)
			}
			if n.Labels[LabelZone] == "" || n.Labels[corev1.LabelArchStable] != "amd64" || n.Labels[corev1.LabelOSStable] != "linux" {
				t.Errorf("well-known labels missing: %v", n.Labels)
			}
			if (len(n.Spec.Taints) > 0) != tt.tainted {
				t.Errorf("taints = %v, tainted want %v", n.Spec.Taints, tt.tainted)
			}
			if tt.userLabel && n.Labels["pool"] != "blue" {
				t.Errorf("user label lost: %v", n.Labels)
			}
			alloc, capa := n.Status.Allocatable, n.Status.Capacity
			if capa.Cpu().Cmp(*alloc.Cpu()) <= 0 || capa.Memory().Cmp(*alloc.Memory()) <= 0 {
				t.Errorf("allocatable %v should be below capacity %v, like a kubelet with reservations", alloc, capa)
			}
			if alloc.Pods().Value() != 110 {
				t.Errorf("allocatable pods = %v", alloc.Pods())
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{Name: "hitless", Nodes: 3, ControlPlaneNodes: 1}, ""},
		{"zero workers is allowed", Options{Name: "a", Nodes: 0, ControlPlaneNodes: 1}, ""},
		{"negative workers", Options{Name: "a", Nodes: -1, ControlPlaneNodes: 1}, "--nodes"},
		{"too many workers", Options{Name: "a", Nodes: 10001, ControlPlaneNodes: 1}, "--nodes"},
		{"uppercase name", Options{Name: "A", Nodes: 1, ControlPlaneNodes: 1}, "--name"},
		{"empty name", Options{Name: "", Nodes: 1, ControlPlaneNodes: 1}, "--name"},
		{"bad label value", Options{Name: "a", Nodes: 1, ControlPlaneNodes: 1, NodeLabels: map[string]string{"k": "has space"}}, "--node-labels"},
		{"unknown flavor", Options{Name: "a", Nodes: 1, ControlPlaneNodes: 1, Flavor: "rancher"}, "--flavor"},
		{"openshift without its CRDs", Options{Name: "a", Nodes: 1, ControlPlaneNodes: 1, Flavor: FlavorOpenShift}, "--openshift-crds"},
		{"openshift CRDs that are not a directory", Options{Name: "a", Nodes: 1, ControlPlaneNodes: 1, Flavor: FlavorOpenShift, OpenShiftCRDs: "/nonexistent"}, "--openshift-crds"},
		{"openshift", Options{Name: "a", Nodes: 1, ControlPlaneNodes: 1, Flavor: FlavorOpenShift, OpenShiftCRDs: "."}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			var invalid *InvalidError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.wantErr != "" && (!errors.As(err, &invalid) || invalid.Field != tt.wantErr):
				t.Errorf("error = %v, want one about %s", err, tt.wantErr)
			}
		})
	}
}
