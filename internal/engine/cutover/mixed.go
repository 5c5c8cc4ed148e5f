package cutover

import (
	"fmt"
	"strings"
)

// family names a data plane by its node DaemonSet's images, as far as
// what is known of mixing it with another goes.
func family(images []string) string {
	for _, img := range images {
		repo := strings.ToLower(img)
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		for _, f := range []struct{ name, match string }{
			{"flannel", "flannel"}, {"kube-router", "kube-router"}, {"calico", "calico/node"},
			{"cilium", "cilium/cilium"}, {"antrea", "antrea"}, {"ovn-kubernetes", "ovn-kubernetes"},
		} {
			if strings.Contains(repo, f.match) {
				return f.name
			}
		}
	}
	return ""
}

// Mixed says whether pods on nodes of one data plane reach pods on nodes
// of the other while a cluster is mixed, from what the plugins document,
// given each node DaemonSet's images: ok is true only when they are
// known to (two DaemonSets of one plugin; Calico's VXLAN speaking
// flannel's, as Calico's flannel migration relies on). Anything else is
// not known to: a migration then cuts pods on moved nodes off from pods on
// the others until they move too, and the probes measure it.
func Mixed(from, to []string) (ok bool, why string) {
	f, t := family(from), family(to)
	switch {
	case f != "" && f == t:
		return true, fmt.Sprintf("both are %s: its nodes route to each other whichever DaemonSet runs them", f)
	case f == "flannel" && t == "calico" || f == "calico" && t == "flannel":
		return true, "Calico's VXLAN (VNI 1, UDP 8472) interoperates with flannel's, as Calico's flannel migration documents, when Calico is configured for it"
	case f == "" || t == "":
		return false, fmt.Sprintf("nothing is known of mixing %s with %s: count on pods on moved nodes not reaching pods on the others until they move", orUnknown(f, from), orUnknown(t, to))
	}
	return false, fmt.Sprintf("%s and %s do not route to each other's nodes (each learns only its own nodes' pod subnets): pods on moved nodes do not reach pods on the others until they move; move in few, large batches where the PDBs allow", f, t)
}

func orUnknown(f string, images []string) string {
	if f != "" {
		return f
	}
	return "the data plane of " + strings.Join(images, ", ")
}
