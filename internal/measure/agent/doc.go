// Package agent is the node agent: it checks its node (kernel, modules,
// resolv.conf, MTU, resources, clock, ports, hugepages), answers and
// measures its peers over TCP and UDP, probes the API server and cluster
// DNS, and reports to the API when a check run asks it to.
package agent
