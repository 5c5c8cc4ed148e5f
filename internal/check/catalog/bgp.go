package catalog

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/hitless-dev/hitless/internal/check"
)

// bgpGracefulRestart warns about a BGP data plane that runs without
// graceful restart: when its pod restarts on a node (an upgrade restarts it
// on every node), the node's BGP peers withdraw its pod routes until the
// session is up again. Measured in hitless's packet lab with kube-router
// v2.1.0 (the real daemon, pod to pod probes): 6.5 to 9.5 s without reach on
// every path to or from the restarted node's pods without it, nothing lost
// with it.
func bgpGracefulRestart(_ context.Context, in *Input) check.Outcome {
	if err := in.Snap.Err("daemonsets"); err != nil {
		return check.Errored(err)
	}
	var objs, why []string
	n := 0
	for i := range in.Snap.DaemonSets {
		d := &in.Snap.DaemonSets[i]
		for _, c := range d.Spec.Template.Spec.Containers {
			speaks, graceful := kubeRouterBGP(c)
			if !speaks {
				continue
			}
			n++
			if !graceful {
				objs = append(objs, "DaemonSet/"+d.Namespace+"/"+d.Name)
				why = append(why, fmt.Sprintf("DaemonSet %s/%s container %s", d.Namespace, d.Name, c.Name))
			}
		}
	}
	if n == 0 {
		return check.Outcome{Status: check.Skip, Message: "no BGP data plane found (kube-router with its router on)"}
	}
	if len(objs) > 0 {
		return check.Outcome{Status: check.Fail,
			Message: fmt.Sprintf("kube-router speaks BGP without --bgp-graceful-restart in %s: each node's restart (an upgrade restarts every node's) makes its peers withdraw its pod routes; "+
				"measured in hitless's packet lab (kube-router v2.1.0): 6.5 to 9.5 s without reach on every path to or from that node's pods, against 0 probes lost with graceful restart",
				strings.Join(why, ", ")),
			Objects:     objs,
			Remediation: "add --bgp-graceful-restart=true to kube-router's args (it takes effect as each node's pod restarts) before rolling or upgrading it"}
	}
	return check.Passed("%d kube-router BGP speaker(s), all with graceful restart", n)
}

// kubeRouterBGP says whether a container runs kube-router's BGP router
// (on unless --run-router=false) and whether with graceful restart (off
// unless asked for).
func kubeRouterBGP(c corev1.Container) (speaks, graceful bool) {
	if !strings.Contains(c.Image, "kube-router") {
		return false, false
	}
	speaks = true
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		name, value, hasValue := strings.Cut(a, "=")
		on := !hasValue || value == "true"
		switch name {
		case "--run-router":
			speaks = on
		case "--bgp-graceful-restart":
			graceful = on
		}
	}
	return speaks, graceful
}
