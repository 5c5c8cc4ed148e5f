package agent

import (
	_ "embed"
	"strings"
)

//go:embed manifest.yaml
var manifestYAML string

// DefaultImage is the agent image the manifest names unless told.
const DefaultImage = "ghcr.io/hitless-dev/hitless:latest"

// HostNetNSOfPID1 is the host's network namespace as a pod on the pod
// network with hostPID sees it.
const HostNetNSOfPID1 = "/proc/1/ns/net"

// ManifestOptions shape the agent's DaemonSet.
type ManifestOptions struct {
	Image string
	// PodNetwork puts the agents on the pod network: they probe each
	// other pod to pod, through the CNI's data plane (what a CNI restart
	// or upgrade disrupts), instead of node to node. Their node checks
	// still read the host's files and its network namespace.
	PodNetwork bool
}

// Manifest returns the agent's Namespace, RBAC and DaemonSet.
func Manifest(o ManifestOptions) string {
	if o.Image == "" {
		o.Image = DefaultImage
	}
	m := strings.Replace(manifestYAML, "image: IMAGE", "image: "+o.Image, 1)
	if o.PodNetwork {
		m = strings.NewReplacer(
			"# The hitless node agent: one privileged pod per node on the host network,", "# The hitless node agent: one privileged pod per node on the pod network,",
			"      hostNetwork: true\n", "      hostNetwork: false\n",
			"      dnsPolicy: ClusterFirstWithHostNet\n", "      dnsPolicy: ClusterFirst\n",
			"--udp-port=9473,", "--udp-port=9473, --advertise=$(POD_IP),",
			// The node checks read routes and the node tasks remove
			// devices in the host's namespace, not the pod's: PID 1's,
			// seen through hostPID.
			"--root=/host,", "--root=/host, --host-netns="+HostNetNSOfPID1+",",
			"        env:\n", "        env:\n        - name: POD_IP\n          valueFrom:\n            fieldRef:\n              fieldPath: status.podIP\n",
		).Replace(m)
	}
	return m
}
