package profile

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hitless-dev/hitless/internal/check"
)

// Kinds of runs.
const (
	Preflight  = "preflight"
	Postflight = "postflight"
)

// Profile is one procedure's checks and thresholds.
type Profile struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Seed names the vendor procedure the profile encodes.
	Seed string `json:"seed"`
	// Pre and Post are the checks of each kind and their severity; node
	// checks (node.*) run in the agents.
	Pre  map[string]check.Severity `json:"pre"`
	Post map[string]check.Severity `json:"post"`
	// MinWorkers is the fewest schedulable workers an operation needs.
	MinWorkers int `json:"minWorkers"`
	// Encapsulation is the overlay's (geneve or vxlan) unless the
	// parameters file says otherwise; it sets the MTU overhead.
	Encapsulation string `json:"encapsulation"`
	// InternalSubnet is the default internal (join) subnet, "" for none.
	InternalSubnet string `json:"internalSubnet,omitempty"`
	// Reserved are ranges the plugin takes for itself: nodes, pods and
	// the declared networks must not use them.
	Reserved []Reserved `json:"reserved,omitempty"`
	// OneRelease refuses a component whose images are not all at one tag
	// (install, upgrade, diff with this profile).
	OneRelease bool `json:"oneRelease,omitempty"`
	// NetworkType is what postflight expects in OpenShift's
	// Network.config.openshift.io status.networkType, "" for any.
	NetworkType string `json:"networkType,omitempty"`
	Node        Node   `json:"node"`
}

// Node is what every node must offer.
type Node struct {
	// KernelConfig are required kernel options without the CONFIG_ prefix.
	KernelConfig []string `json:"kernelConfig,omitempty"`
	// Modules must be loaded, built in or loadable.
	Modules      []Module `json:"modules,omitempty"`
	Ports        []Port   `json:"ports,omitempty"`
	MinMemoryMiB int64    `json:"minMemoryMiB,omitempty"`
	MinDiskMiB   int64    `json:"minDiskMiB,omitempty"`
	MinCPU       int      `json:"minCPU,omitempty"`
	// HugepagesLabel marks nodes (DPDK) that need hugepages: key=value.
	HugepagesLabel string `json:"hugepagesLabel,omitempty"`
}

// Module is a kernel module and the option that builds it in.
type Module struct {
	Name   string `json:"name"`
	Config string `json:"config"`
}

// Reserved is a range the network plugin uses internally.
type Reserved struct {
	CIDR string `json:"cidr"`
	Use  string `json:"use"`
}

// Port must be free on every node before the install.
type Port struct {
	Number   int    `json:"number"`
	Protocol string `json:"protocol"` // tcp or udp
	Use      string `json:"use"`
}

func (p Port) String() string { return fmt.Sprintf("%d/%s (%s)", p.Number, p.Protocol, p.Use) }

// Severity returns the severity of check id in a run of kind, and whether
// the profile runs it at all.
func (p *Profile) Severity(kind, id string) (check.Severity, bool) {
	m := p.Pre
	if kind == Postflight {
		m = p.Post
	}
	s, ok := m[id]
	return s, ok
}

// IDs returns the ids of a run of kind, sorted.
func (p *Profile) IDs(kind string) []string {
	m := p.Pre
	if kind == Postflight {
		m = p.Post
	}
	return slices.Sorted(maps.Keys(m))
}

// Names lists the profiles.
func Names() []string {
	return []string{"generic", "cn2", "openshift-ovn-migration", "fujitsu-update", "tungsten-issu"}
}

// Get returns the named profile.
func Get(name string) (*Profile, error) {
	switch name {
	case "generic", "":
		return generic(), nil
	case "cn2":
		return cn2(), nil
	case "openshift-ovn-migration":
		return openshiftOVN(), nil
	case "fujitsu-update":
		return fujitsu(), nil
	case "tungsten-issu":
		return tungsten(), nil
	}
	return nil, fmt.Errorf("unknown profile %q: want one of %s", name, strings.Join(Names(), ", "))
}

const (
	h = check.Hard
	s = check.Soft
)

func basePre() map[string]check.Severity {
	return map[string]check.Severity{
		"nodes.min-workers": h, "nodes.ready": h, "nodes.cordoned": s, "nodes.version-skew": h,
		"capacity.pod-slots": h, "capacity.drain-fit": h,
		"drain.unmanaged-pods": h, "drain.pinned-pods": h, "drain.pdb": h, "drain.single-replica": s, "drain.dry-run": h,
		"workloads.pods": s, "workloads.rollouts": s,
		"platform.readyz": h, "platform.apiservices": h, "platform.webhooks": h,
		"openshift.clusteroperators": h, "openshift.machineconfigpools": h,
		"network.cidrs": h, "network.overlap": h, "network.host-prefix": h, "network.vips": h,
		"network.cluster-name": h, "network.mtu": h, "network.ports": h, "network.internal-subnet": h,
		"network.bgp-graceful-restart": s,
		"versions.matrix":              h,
		"agents.reported":              s,
		"node.kernel-config":           h, "node.kernel-modules": h, "node.resolv-conf": h, "node.mtu": s,
		"node.resources": h, "node.clock": s, "node.ports": h, "node.hugepages": h, "node.overlay-routes": s,
	}
}

func basePost() map[string]check.Severity {
	return map[string]check.Severity{
		"nodes.ready": h, "workloads.pods": h, "workloads.rollouts": h, "platform.readyz": h, "platform.apiservices": h,
		"openshift.clusteroperators": h, "openshift.network-type": h,
		"agents.reported": h, "agents.apiserver": h, "agents.connectivity": h, "agents.dns": h,
		"node.overlay-routes": h,
	}
}

func generic() *Profile {
	return &Profile{
		Name: "generic", Title: "Any CNI: drainability, capacity, workloads, platform and network parameters",
		Seed: "none; the common ground of seeds 000-004",
		Pre:  basePre(), Post: basePost(), MinWorkers: 2, Encapsulation: "vxlan",
		Node: Node{KernelConfig: []string{"VXLAN"}, Modules: []Module{{"vxlan", "VXLAN"}}, MinMemoryMiB: 1024, MinDiskMiB: 1024, MinCPU: 1},
	}
}

// cn2 encodes seed 000 (Juniper CN2 23.1): preflight checks resource
// capacity, kernel, reachability and infrastructure before install or
// upgrade; every node needs a free pod slot for the upgrade; postflight
// checks status, pod-to-pod communication and API server reachability.
func cn2() *Profile {
	p := generic()
	p.Name, p.Title = "cn2", "Juniper CN2 install and upgrade"
	p.Seed = "000: CN2 23.1 preflight/postflight (ContrailReadiness) and upgrade (a free pod slot per node)"
	p.Encapsulation = "vxlan"
	// Seed 000: every manifest refers to the same software version.
	p.OneRelease = true
	p.Node = Node{
		KernelConfig: []string{"VXLAN", "BRIDGE", "VETH", "NETFILTER_XT_MATCH_COMMENT"},
		Modules:      []Module{{"vxlan", "VXLAN"}},
		Ports:        []Port{{179, "tcp", "BGP"}, {4789, "udp", "VXLAN"}, {6635, "udp", "MPLSoUDP"}},
		MinMemoryMiB: 8192, MinDiskMiB: 20480, MinCPU: 4,
		HugepagesLabel: "agent-mode=dpdk",
	}
	return p
}

// openshiftOVN encodes seed 002 (OpenShift SDN to OVN-Kubernetes
// migration): every ClusterOperator healthy and MachineConfigPool updated
// first, MTU lowered for Geneve's 100 bytes, port 6081/udp, and the
// internal subnet 100.64.0.0/16 disjoint from every other network.
func openshiftOVN() *Profile {
	p := generic()
	p.Name, p.Title = "openshift-ovn-migration", "OpenShift SDN to OVN-Kubernetes migration"
	p.Seed = "002: OpenShift limited live migration to OVN-Kubernetes (ClusterOperators, MCPs, MTU, Geneve port, internal subnets)"
	p.Encapsulation = "geneve"
	p.InternalSubnet = "100.64.0.0/16"
	// OVN-Kubernetes' defaults (ovnKubernetesConfig): the transit switch
	// of interconnect zones (4.14 and later) and the masquerade subnet.
	p.Reserved = []Reserved{{"100.88.0.0/16", "OVN transit switch subnet"}, {"169.254.169.0/29", "OVN masquerade subnet"}}
	p.NetworkType = "OVNKubernetes"
	p.Pre["workloads.rollouts"] = h
	p.Node = Node{
		KernelConfig: []string{"GENEVE", "OPENVSWITCH", "OPENVSWITCH_GENEVE"},
		Modules:      []Module{{"geneve", "GENEVE"}, {"openvswitch", "OPENVSWITCH"}},
		Ports:        []Port{{6081, "udp", "Geneve"}},
		MinMemoryMiB: 8192, MinDiskMiB: 20480, MinCPU: 2,
	}
	return p
}

// fujitsu encodes seed 003 (Fujitsu Container Management update): no
// unmanaged pods, no pods pinned to a node, at least two nodes, and a
// resolv.conf that names more than loopback.
func fujitsu() *Profile {
	p := generic()
	p.Name, p.Title = "fujitsu-update", "Fujitsu Container Management rolling update"
	p.Seed = "003: Fujitsu update prerequisites (non managed pods, pinned pods, two nodes, resolv.conf)"
	p.Pre["workloads.pods"] = h
	p.Node = Node{MinMemoryMiB: 4096, MinDiskMiB: 10240, MinCPU: 2}
	return p
}

// tungsten encodes seed 004 (Tungsten Fabric in-service software
// upgrade): controller, vRouter agent, kernel module and kernel must be a
// supported combination, and the data plane needs VXLAN/MPLSoUDP and BGP.
func tungsten() *Profile {
	p := generic()
	p.Name, p.Title = "tungsten-issu", "Tungsten Fabric in-service software upgrade"
	p.Seed = "004: Tungsten Fabric ISSU (compatibility of controller, agent, kernel module and kernel)"
	p.Node = Node{
		KernelConfig: []string{"VXLAN"},
		Modules:      []Module{{"vxlan", "VXLAN"}},
		Ports:        []Port{{179, "tcp", "BGP"}, {4789, "udp", "VXLAN"}},
		MinMemoryMiB: 8192, MinDiskMiB: 20480, MinCPU: 4,
	}
	return p
}
