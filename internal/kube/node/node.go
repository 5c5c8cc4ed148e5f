package node

import (
	corev1 "k8s.io/api/core/v1"
	nodeutil "k8s.io/component-helpers/node/util"
)

// Role labels of a control-plane node, current and legacy.
const (
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
	LabelMaster       = "node-role.kubernetes.io/master"
)

// Ready reports whether the node's Ready condition is True.
func Ready(n *corev1.Node) bool {
	_, c := nodeutil.GetNodeCondition(&n.Status, corev1.NodeReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// ControlPlane reports whether the node carries a control-plane role label.
func ControlPlane(n *corev1.Node) bool {
	_, cp := n.Labels[LabelControlPlane]
	_, master := n.Labels[LabelMaster]
	return cp || master
}

// InternalIP returns the node's first InternalIP address, or "".
func InternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
