// Package breach holds the tests of a Component upgraded under a probe
// budget on the packet lab (the node agents probe each other in the
// nodes' network namespaces; a node's link is down while its data-plane
// pod is replaced, a model of a data plane that stops): the budget is
// exceeded, the controller rolls the upgrade back or pauses it, and its
// status, Events and metrics say so. They need a cluster of their own.
package breach
