// Package kubelet is the lab kubelet: on the nodes of a local cluster's
// packet lab it runs the real daemons of the DaemonSet pods whose images it
// knows (kube-router, flanneld, hitless's probe pods), each in its node's
// network namespace and in a mount namespace whose /run, /etc/cni/net.d,
// /opt/cni/bin and /var/lib/cni are the node's own, wires pods that are not
// on the host network with the node's CNI configuration and the real CNI
// plugins, and reports their status from the daemons themselves. KWOK
// keeps every other pod.
package kubelet
