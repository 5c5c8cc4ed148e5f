package catalog

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hitless-dev/hitless/internal/check"
)

// Encapsulation overheads in bytes.
var overhead = map[string]int{"geneve": 100, "vxlan": 50}

const defaultVXLANPort, defaultGenevePort = 4789, 6081

func networkChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "network.cidrs", Heading: "Node pod CIDRs and the service IP lie in the declared networks", Fn: cidrs},
		check.Func[*Input]{Name: "network.overlap", Heading: "Cluster, service, machine and internal networks are disjoint", Fn: overlap},
		check.Func[*Input]{Name: "network.host-prefix", Heading: "The host prefix gives every node a pod subnet", Fn: hostPrefix},
		check.Func[*Input]{Name: "network.vips", Heading: "API and ingress VIPs in the machine network, distinct, unused by nodes", Fn: vips},
		check.Func[*Input]{Name: "network.cluster-name", Heading: "The cluster name is a lower-case DNS-1123 label", Fn: clusterName},
		check.Func[*Input]{Name: "network.mtu", Heading: "The overlay MTU fits the nodes' MTU minus the encapsulation", Fn: mtu},
		check.Func[*Input]{Name: "network.ports", Heading: "Geneve and VXLAN ports valid and distinct", Fn: ports},
		check.Func[*Input]{Name: "network.internal-subnet", Heading: "The internal (join) subnet is large enough; it and the plugin's reserved ranges are unused", Fn: internalSubnet},
		check.Func[*Input]{Name: "network.bgp-graceful-restart", Heading: "A BGP data plane restarts gracefully (its peers keep its routes)", Fn: bgpGracefulRestart},
	}
}

func param(field string) string { return "Parameter/" + field }

// podCIDRs returns every node's pod CIDRs.
func podCIDRs(nodes []corev1.Node) (map[string][]netip.Prefix, []string) {
	out := map[string][]netip.Prefix{}
	var bad []string
	for i := range nodes {
		n := &nodes[i]
		list := n.Spec.PodCIDRs
		if len(list) == 0 && n.Spec.PodCIDR != "" {
			list = []string{n.Spec.PodCIDR}
		}
		for _, c := range list {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: invalid pod CIDR %q", n.Name, c))
				continue
			}
			out[n.Name] = append(out[n.Name], p)
		}
	}
	return out, bad
}

func cidrs(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("nodes"); err != nil {
		return check.Errored(err)
	}
	byNode, bad := podCIDRs(in.Snap.Nodes)
	var objs []string
	for _, b := range bad {
		objs = append(objs, nodeRef(strings.SplitN(b, ":", 2)[0]))
	}
	// Node pod CIDRs must not overlap one another.
	type owned struct {
		node string
		p    netip.Prefix
	}
	var all []owned
	for n, ps := range byNode {
		for _, p := range ps {
			all = append(all, owned{n, p})
		}
	}
	slices.SortFunc(all, func(a, b owned) int { return a.p.Addr().Compare(b.p.Addr()) })
	for i := 1; i < len(all); i++ {
		if all[i-1].p.Overlaps(all[i].p) {
			bad = append(bad, fmt.Sprintf("pod CIDRs of %s (%s) and %s (%s) overlap", all[i-1].node, all[i-1].p, all[i].node, all[i].p))
			objs = append(objs, nodeRef(all[i-1].node), nodeRef(all[i].node))
		}
	}
	net := in.Network
	if net != nil && len(net.ClusterNetwork) > 0 {
		for _, o := range all {
			inside := false
			for _, c := range net.ClusterNetwork {
				if cn := netip.MustParsePrefix(c.CIDR); cn.Contains(o.p.Addr()) && o.p.Bits() >= cn.Bits() {
					inside = true
				}
			}
			if !inside {
				bad = append(bad, fmt.Sprintf("pod CIDR %s of %s is outside clusterNetwork", o.p, o.node))
				objs = append(objs, nodeRef(o.node))
			}
		}
	}
	if net != nil && len(net.ServiceNetwork) > 0 && in.Snap.KubernetesService != nil {
		ip, err := netip.ParseAddr(in.Snap.KubernetesService.Spec.ClusterIP)
		if err == nil && !containsAny(net.ServiceNetwork, ip) {
			bad = append(bad, fmt.Sprintf("the kubernetes Service's IP %s is outside serviceNetwork %s", ip, strings.Join(net.ServiceNetwork, ", ")))
			objs = append(objs, "Service/default/kubernetes", param("serviceNetwork"))
		}
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: dedupe(objs),
			Remediation: "make the parameters match the cluster (clusterNetwork, serviceNetwork), or repair the nodes' podCIDR allocation"}
	}
	return check.Passed("%d node pod CIDRs valid and disjoint%s", len(all), map[bool]string{true: ", inside the declared networks", false: ""}[net != nil])
}

func containsAny(cidrs []string, ip netip.Addr) bool {
	for _, c := range cidrs {
		if netip.MustParsePrefix(c).Contains(ip) {
			return true
		}
	}
	return false
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// internalCIDR is the internal subnet from the parameters or the profile.
func (in *Input) internalCIDR() string {
	if in.Network != nil && in.Network.InternalSubnet != "" {
		return in.Network.InternalSubnet
	}
	return in.Profile.InternalSubnet
}

func overlap(_ context.Context, in *Input) check.Outcome {
	net := in.Network
	if net == nil {
		return check.Skipped("no network parameters (-f params.yaml)")
	}
	type named struct {
		field string
		p     netip.Prefix
	}
	var all []named
	for i, c := range net.ClusterNetwork {
		all = append(all, named{fmt.Sprintf("clusterNetwork[%d]", i), netip.MustParsePrefix(c.CIDR)})
	}
	for i, c := range net.ServiceNetwork {
		all = append(all, named{fmt.Sprintf("serviceNetwork[%d]", i), netip.MustParsePrefix(c)})
	}
	for i, c := range net.MachineNetwork {
		all = append(all, named{fmt.Sprintf("machineNetwork[%d]", i), netip.MustParsePrefix(c)})
	}
	if c := in.internalCIDR(); c != "" {
		all = append(all, named{"internalSubnet", netip.MustParsePrefix(c)})
	}
	var bad, objs []string
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].p.Overlaps(all[j].p) {
				bad = append(bad, fmt.Sprintf("%s %s overlaps %s %s", all[i].field, all[i].p, all[j].field, all[j].p))
				objs = append(objs, param(all[i].field), param(all[j].field))
			}
		}
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: dedupe(objs),
			Remediation: "choose non-overlapping ranges; an overlap makes pod, service or node traffic unroutable"}
	}
	return check.Passed("%d networks pairwise disjoint", len(all))
}

// subnets returns 2^(hostPrefix-bits), capped.
func subnets(bits, hostPrefix int) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(hostPrefix-bits)) //nolint:gosec // checked hostPrefix >= bits
}

func hostPrefix(_ context.Context, in *Input) check.Outcome {
	net := in.Network
	if net == nil || len(net.ClusterNetwork) == 0 {
		return check.Skipped("no clusterNetwork in the parameters")
	}
	total := new(big.Int)
	var bad, objs []string
	for i, c := range net.ClusterNetwork {
		p := netip.MustParsePrefix(c.CIDR)
		field := fmt.Sprintf("clusterNetwork[%d].hostPrefix", i)
		maxBits := p.Addr().BitLen()
		if c.HostPrefix < p.Bits() || c.HostPrefix > maxBits {
			bad = append(bad, fmt.Sprintf("%s %d does not fit %s (want %d to %d)", field, c.HostPrefix, p, p.Bits(), maxBits))
			objs = append(objs, param(field))
			continue
		}
		total.Add(total, subnets(p.Bits(), c.HostPrefix))
	}
	nodes := big.NewInt(int64(len(in.Snap.Nodes)))
	if len(bad) == 0 && total.Cmp(nodes) < 0 {
		bad = append(bad, fmt.Sprintf("clusterNetwork yields %s node subnets for %d nodes", total, len(in.Snap.Nodes)))
		objs = append(objs, param("clusterNetwork"))
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: objs,
			Remediation: "widen clusterNetwork or raise hostPrefix so that every node gets its own pod subnet"}
	}
	return check.Passed("%s node subnets for %d nodes", total, len(in.Snap.Nodes))
}

func nodeAddresses(nodes []corev1.Node) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for i := range nodes {
		for _, a := range nodes[i].Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out[ip] = nodes[i].Name
			}
		}
	}
	return out
}

func vips(_ context.Context, in *Input) check.Outcome {
	net := in.Network
	if net == nil || (net.APIVIP == "" && net.IngressVIP == "") {
		return check.Skipped("no apiVIP or ingressVIP in the parameters")
	}
	addrs := nodeAddresses(in.Snap.Nodes)
	var bad, objs []string
	for _, v := range []struct{ field, ip string }{{"apiVIP", net.APIVIP}, {"ingressVIP", net.IngressVIP}} {
		if v.ip == "" {
			continue
		}
		ip := netip.MustParseAddr(v.ip)
		if len(net.MachineNetwork) == 0 {
			bad = append(bad, fmt.Sprintf("%s %s cannot be placed: no machineNetwork given", v.field, ip))
			objs = append(objs, param(v.field))
		} else if !containsAny(net.MachineNetwork, ip) {
			bad = append(bad, fmt.Sprintf("%s %s is outside the machine network %s", v.field, ip, strings.Join(net.MachineNetwork, ", ")))
			objs = append(objs, param(v.field))
		}
		if node, ok := addrs[ip]; ok {
			bad = append(bad, fmt.Sprintf("%s %s is the address of node %s", v.field, ip, node))
			objs = append(objs, param(v.field), nodeRef(node))
		}
	}
	if net.APIVIP != "" && net.APIVIP == net.IngressVIP {
		bad = append(bad, "apiVIP and ingressVIP are the same address "+net.APIVIP)
		objs = append(objs, param("apiVIP"), param("ingressVIP"))
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: dedupe(objs),
			Remediation: "pick two distinct free addresses inside the machine network for the VIPs"}
	}
	return check.Passed("VIPs inside the machine network, distinct and free")
}

func clusterName(_ context.Context, in *Input) check.Outcome {
	if in.Network == nil || in.Network.ClusterName == "" {
		return check.Skipped("no clusterName in the parameters")
	}
	if errs := validation.IsDNS1123Label(in.Network.ClusterName); len(errs) > 0 {
		return check.Outcome{Status: check.Fail, Message: fmt.Sprintf("clusterName %q: %s", in.Network.ClusterName, strings.Join(errs, "; ")),
			Objects: []string{param("clusterName")}, Remediation: "use lower-case letters, digits and '-', at most 63 characters"}
	}
	return check.Passed("clusterName %q is a DNS-1123 label", in.Network.ClusterName)
}

// encapsulation is the parameters' or the profile's.
func (in *Input) encapsulation() string {
	if in.Network != nil && in.Network.Encapsulation != "" {
		return in.Network.Encapsulation
	}
	return in.Profile.Encapsulation
}

func mtu(_ context.Context, in *Input) check.Outcome {
	if in.Network == nil || in.Network.MTU == 0 {
		return check.Skipped("no mtu in the parameters")
	}
	machine, from := in.Network.MachineMTU, "machineMTU"
	if machine == 0 {
		for node, r := range in.Agents {
			if r.MTU > 0 && (machine == 0 || r.MTU < machine) {
				machine, from = r.MTU, "node "+node+" (agent)"
			}
		}
	}
	if machine == 0 {
		return check.Skipped("node MTU unknown: give machineMTU or run the agents")
	}
	encap := in.encapsulation()
	limit := machine - overhead[encap]
	if in.Network.MTU > limit {
		return check.Outcome{Status: check.Fail,
			Message: fmt.Sprintf("overlay mtu %d is larger than %d: the smallest node MTU %d (%s) minus %d bytes of %s overhead; packets would be dropped or fragmented",
				in.Network.MTU, limit, machine, from, overhead[encap], encap),
			Objects: []string{param("mtu")}, Remediation: fmt.Sprintf("set mtu to %d or less", limit)}
	}
	return check.Passed("overlay mtu %d fits %d (node MTU %d minus %d for %s)", in.Network.MTU, limit, machine, overhead[encap], encap)
}

func ports(_ context.Context, in *Input) check.Outcome {
	net := in.Network
	if net == nil || (net.GenevePort == 0 && net.VXLANPort == 0) {
		return check.Skipped("no genevePort or vxlanPort in the parameters")
	}
	vx := net.VXLANPort
	if vx == 0 {
		vx = defaultVXLANPort
	}
	var bad, objs []string
	for _, p := range []struct {
		field string
		v     int
	}{{"genevePort", net.GenevePort}, {"vxlanPort", net.VXLANPort}} {
		if p.v != 0 && (p.v < 1 || p.v > 65535) {
			bad = append(bad, fmt.Sprintf("%s %d is not a UDP port (1-65535)", p.field, p.v))
			objs = append(objs, param(p.field))
		}
	}
	if net.GenevePort != 0 && net.GenevePort == vx {
		bad = append(bad, fmt.Sprintf("genevePort %d is the VXLAN port", net.GenevePort))
		objs = append(objs, param("genevePort"))
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: dedupe(objs),
			Remediation: fmt.Sprintf("use the defaults (Geneve %d, VXLAN %d) unless something else holds them", defaultGenevePort, defaultVXLANPort)}
	}
	return check.Passed("ports valid and distinct")
}

func internalSubnet(_ context.Context, in *Input) check.Outcome {
	c := in.internalCIDR()
	if c == "" && len(in.Profile.Reserved) == 0 {
		return check.Skipped("no internal subnet for this profile or in the parameters")
	}
	var bad, objs, ok []string
	if c != "" {
		p := netip.MustParsePrefix(c)
		// One address per node, plus the network and gateway addresses.
		need := big.NewInt(int64(len(in.Snap.Nodes) + 2))
		have := subnets(p.Bits(), p.Addr().BitLen())
		if have.Cmp(need) < 0 {
			bad = append(bad, fmt.Sprintf("internal subnet %s has %s addresses, %s needed for %d nodes", p, have, need, len(in.Snap.Nodes)))
			objs = append(objs, param("internalSubnet"))
		}
		b, o := unused(in, p, "internal subnet "+p.String())
		bad, objs = append(bad, b...), append(objs, o...)
		ok = append(ok, fmt.Sprintf("internal subnet %s: %s addresses for %d nodes", p, have, len(in.Snap.Nodes)))
	}
	for _, r := range in.Profile.Reserved {
		p := netip.MustParsePrefix(r.CIDR)
		name := fmt.Sprintf("%s %s", r.Use, p)
		b, o := unused(in, p, name)
		bad, objs = append(bad, b...), append(objs, o...)
		if in.Network != nil {
			for i, cn := range in.Network.ClusterNetwork {
				if netip.MustParsePrefix(cn.CIDR).Overlaps(p) {
					bad = append(bad, fmt.Sprintf("%s overlaps clusterNetwork[%d] %s", name, i, cn.CIDR))
					objs = append(objs, param(fmt.Sprintf("clusterNetwork[%d]", i)))
				}
			}
			for _, l := range []struct {
				field string
				cidrs []string
			}{{"serviceNetwork", in.Network.ServiceNetwork}, {"machineNetwork", in.Network.MachineNetwork}} {
				for i, cn := range l.cidrs {
					if netip.MustParsePrefix(cn).Overlaps(p) {
						bad = append(bad, fmt.Sprintf("%s overlaps %s[%d] %s", name, l.field, i, cn))
						objs = append(objs, param(fmt.Sprintf("%s[%d]", l.field, i)))
					}
				}
			}
		}
		ok = append(ok, name+" unused")
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return check.Outcome{Status: check.Fail, Message: summarize(bad), Objects: dedupe(objs),
			Remediation: "choose an internal subnet (OVN: internalJoinSubnet) large enough and disjoint from every network the nodes use; move the plugin's reserved ranges (OVN: ipv4.internalTransitSwitchSubnet, gatewayConfig.ipv4.internalMasqueradeSubnet) off the networks in use"}
	}
	return check.Passed("%s", strings.Join(ok, "; "))
}

// unused lists what in the cluster already uses p: a node's pod CIDR,
// a node's address or the kubernetes Service's IP.
func unused(in *Input, p netip.Prefix, name string) (bad, objs []string) {
	byNode, _ := podCIDRs(in.Snap.Nodes)
	for n, ps := range byNode {
		for _, pc := range ps {
			if pc.Overlaps(p) {
				bad = append(bad, fmt.Sprintf("%s overlaps node %s's pod CIDR %s", name, n, pc))
				objs = append(objs, nodeRef(n))
			}
		}
	}
	for ip, n := range nodeAddresses(in.Snap.Nodes) {
		if p.Contains(ip) {
			bad = append(bad, fmt.Sprintf("%s contains node %s's address %s", name, n, ip))
			objs = append(objs, nodeRef(n))
		}
	}
	if svc := in.Snap.KubernetesService; svc != nil {
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && p.Contains(ip) {
			bad = append(bad, fmt.Sprintf("%s contains the kubernetes Service's IP %s", name, ip))
			objs = append(objs, "Service/default/kubernetes")
		}
	}
	return bad, objs
}
