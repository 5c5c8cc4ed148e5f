package catalog

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/params"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// Every check a profile names exists, and every check is in some profile.
func TestProfilesNameRealChecks(t *testing.T) {
	known := map[string]bool{}
	for _, c := range All() {
		if known[c.ID()] {
			t.Fatalf("check %s defined twice", c.ID())
		}
		known[c.ID()] = true
	}
	for _, c := range agent.NodeChecks() {
		known[c.ID()] = true
	}
	used := map[string]bool{}
	for _, name := range profile.Names() {
		p, err := profile.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Seed == "" || p.Title == "" {
			t.Fatalf("profile %s does not say which procedure it encodes", name)
		}
		for _, kind := range []string{profile.Preflight, profile.Postflight} {
			for _, id := range p.IDs(kind) {
				if !known[id] {
					t.Fatalf("profile %s %s names unknown check %s", name, kind, id)
				}
				used[id] = true
			}
		}
	}
	for id := range known {
		if !used[id] {
			t.Fatalf("check %s is in no profile", id)
		}
	}
}

func node(name, ip, podCIDR string) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

func netInput(t *testing.T, yaml string) *Input {
	t.Helper()
	p, _ := profile.Get("generic")
	in := &Input{Profile: p, Snap: &snapshot.Snapshot{Errs: map[string]error{}, Nodes: []corev1.Node{
		node("w1", "192.168.10.11", "10.128.0.0/23"),
		node("w2", "192.168.10.12", "10.128.2.0/23"),
	}}}
	in.Snap.KubernetesService = &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "172.30.0.1"}}
	if yaml != "" {
		n, err := params.ParseNetwork("params.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		in.Network = n
	}
	return in
}

const goodNet = `
clusterName: prod
clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 23}]
serviceNetwork: [172.30.0.0/16]
machineNetwork: [192.168.10.0/24]
apiVIP: 192.168.10.5
ingressVIP: 192.168.10.6
mtu: 1350
machineMTU: 1500
genevePort: 6081
internalSubnet: 100.64.0.0/16
`

func TestNetworkChecks(t *testing.T) {
	tests := []struct {
		name    string
		fn      func(context.Context, *Input) check.Outcome
		yaml    string
		status  check.Status
		msg     string
		objects []string
	}{
		{"all good overlap", overlap, goodNet, check.Pass, "4 networks", nil},
		{"cluster overlaps service", overlap, "clusterNetwork: [{cidr: 10.0.0.0/8, hostPrefix: 23}]\nserviceNetwork: [10.96.0.0/12]\n",
			check.Fail, "clusterNetwork[0] 10.0.0.0/8 overlaps serviceNetwork[0] 10.96.0.0/12", []string{"Parameter/clusterNetwork[0]", "Parameter/serviceNetwork[0]"}},
		{"machine overlaps OVN internal", overlap, "machineNetwork: [100.64.0.0/24]\ninternalSubnet: 100.64.0.0/16\n",
			check.Fail, "overlaps internalSubnet", []string{"Parameter/internalSubnet", "Parameter/machineNetwork[0]"}},
		{"no params", overlap, "", check.Skip, "no network parameters", nil},
		{"vips good", vips, goodNet, check.Pass, "", nil},
		{"vip outside machine network", vips, "machineNetwork: [192.168.10.0/24]\napiVIP: 192.168.20.5\ningressVIP: 192.168.10.6\n",
			check.Fail, "apiVIP 192.168.20.5 is outside the machine network 192.168.10.0/24", []string{"Parameter/apiVIP"}},
		{"vip is a node address", vips, "machineNetwork: [192.168.10.0/24]\napiVIP: 192.168.10.11\n",
			check.Fail, "is the address of node w1", []string{"Node/w1", "Parameter/apiVIP"}},
		{"vips equal", vips, "machineNetwork: [192.168.10.0/24]\napiVIP: 192.168.10.5\ningressVIP: 192.168.10.5\n",
			check.Fail, "the same address", []string{"Parameter/apiVIP", "Parameter/ingressVIP"}},
		{"mtu fits", mtu, goodNet, check.Pass, "1350 fits 1450", nil},
		{"mtu too large for geneve", mtu, "mtu: 1450\nmachineMTU: 1500\nencapsulation: geneve\n",
			check.Fail, "overlay mtu 1450 is larger than 1400", []string{"Parameter/mtu"}},
		{"host prefix too long for cluster network", hostPrefix, "clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 12}]\n",
			check.Fail, "does not fit", []string{"Parameter/clusterNetwork[0].hostPrefix"}},
		{"too few subnets", hostPrefix, "clusterNetwork: [{cidr: 10.128.0.0/24, hostPrefix: 24}]\n",
			check.Fail, "1 node subnets for 2 nodes", []string{"Parameter/clusterNetwork"}},
		{"host prefix good", hostPrefix, goodNet, check.Pass, "512 node subnets for 2 nodes", nil},
		{"cluster name upper case", clusterName, "clusterName: Prod\n", check.Fail, "Prod", []string{"Parameter/clusterName"}},
		{"geneve on vxlan port", ports, "genevePort: 4789\n", check.Fail, "genevePort 4789 is the VXLAN port", []string{"Parameter/genevePort"}},
		{"port out of range", ports, "genevePort: 70000\n", check.Fail, "not a UDP port", []string{"Parameter/genevePort"}},
		{"internal subnet too small", internalSubnet, "internalSubnet: 100.64.0.0/31\n", check.Fail, "2 addresses, 4 needed", []string{"Parameter/internalSubnet"}},
		{"pod CIDRs outside cluster network", cidrs, "clusterNetwork: [{cidr: 10.200.0.0/14, hostPrefix: 23}]\n",
			check.Fail, "pod CIDR 10.128.0.0/23 of w1 is outside clusterNetwork", []string{"Node/w1", "Node/w2"}},
		{"service IP outside service network", cidrs, "serviceNetwork: [10.96.0.0/12]\n",
			check.Fail, "172.30.0.1 is outside serviceNetwork", []string{"Parameter/serviceNetwork", "Service/default/kubernetes"}},
		{"cidrs good", cidrs, goodNet, check.Pass, "inside the declared networks", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.fn(context.Background(), netInput(t, tt.yaml))
			if out.Status != tt.status || !strings.Contains(out.Message, tt.msg) {
				t.Fatalf("got %s %q, want %s containing %q", out.Status, out.Message, tt.status, tt.msg)
			}
			if tt.objects != nil && !slices.Equal(dedupe(out.Objects), tt.objects) {
				t.Fatalf("objects %v, want %v", out.Objects, tt.objects)
			}
		})
	}
}

func TestMTUFromAgents(t *testing.T) {
	in := netInput(t, "mtu: 1400\n")
	in.Agents = map[string]*agent.Report{"w1": {MTU: 1500}, "w2": {MTU: 1400}}
	out := mtu(context.Background(), in)
	if out.Status != check.Fail || !strings.Contains(out.Message, "smallest node MTU 1400 (node w2 (agent))") {
		t.Fatalf("got %s %q, want a failure naming w2's MTU 1400", out.Status, out.Message)
	}
}

func TestConnectivityMatrix(t *testing.T) {
	in := netInput(t, "")
	in.Agents = map[string]*agent.Report{
		"w1": {Peers: []agent.Peer{{Node: "w2", TCP: true, UDP: false, UDPError: "udp: no echo"}}},
		"w2": {Peers: []agent.Peer{{Node: "w1", TCP: true, UDP: true}}},
	}
	out := connectivity(context.Background(), in)
	if out.Status != check.Fail || !strings.Contains(out.Message, "w1 -> w2: udp: no echo") {
		t.Fatalf("got %s %q", out.Status, out.Message)
	}
	lines := strings.Split(out.Message, "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], "w1") || !strings.Contains(lines[2], "UDP") || !strings.Contains(lines[3], "ok") {
		t.Fatalf("matrix rows wrong:\n%s", out.Message)
	}
}

func TestSplitImage(t *testing.T) {
	for in, want := range map[string][2]string{
		"nginx":                            {"nginx", "latest"},
		"registry:5000/a/b:1.2":            {"registry:5000/a/b", "1.2"},
		"docker.io/x/y:2011.L3@sha256:abc": {"docker.io/x/y", "2011.L3"},
		"registry:5000/a/b":                {"registry:5000/a/b", "latest"},
	} {
		repo, tag := splitImage(in)
		if repo != want[0] || tag != want[1] {
			t.Fatalf("splitImage(%q) = %q %q, want %q %q", in, repo, tag, want[0], want[1])
		}
	}
}

func TestReservedRanges(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		nodeIP  string
		status  check.Status
		msg     string
		objects []string
	}{
		{"unused", goodNet, "", check.Pass, "OVN transit switch subnet 100.88.0.0/16 unused; OVN masquerade subnet 169.254.169.0/29 unused", nil},
		{"a node in the transit switch subnet", "", "100.88.4.7", check.Fail,
			"OVN transit switch subnet 100.88.0.0/16 contains node w3's address 100.88.4.7", []string{"Node/w3"}},
		{"the cluster network over the masquerade subnet", "clusterNetwork: [{cidr: 169.254.0.0/16, hostPrefix: 23}]\n", "", check.Fail,
			"OVN masquerade subnet 169.254.169.0/29 overlaps clusterNetwork[0] 169.254.0.0/16", []string{"Parameter/clusterNetwork[0]"}},
		{"the machine network over the transit switch", "machineNetwork: [100.88.0.0/24]\n", "", check.Fail,
			"overlaps machineNetwork[0] 100.88.0.0/24", []string{"Parameter/machineNetwork[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := netInput(t, tt.yaml)
			in.Profile, _ = profile.Get("openshift-ovn-migration")
			if tt.nodeIP != "" {
				in.Snap.Nodes = append(in.Snap.Nodes, node("w3", tt.nodeIP, "10.128.4.0/23"))
			}
			out := internalSubnet(context.Background(), in)
			if out.Status != tt.status || !strings.Contains(out.Message, tt.msg) {
				t.Fatalf("got %s %q, want %s containing %q", out.Status, out.Message, tt.status, tt.msg)
			}
			if tt.objects != nil && !slices.Equal(dedupe(out.Objects), tt.objects) {
				t.Fatalf("objects %v, want %v", out.Objects, tt.objects)
			}
		})
	}
}
