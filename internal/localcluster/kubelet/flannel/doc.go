// Package flannel holds the tests of flannel's VXLAN data plane on the
// packet lab: the real flanneld, run by the lab kubelet in every node's
// namespace from the lab's DaemonSet (examples/flannel-lab), measured pod
// to pod. They need a cluster of their own (a node carries one data
// plane), so they are not in the kubelet package's.
package flannel
