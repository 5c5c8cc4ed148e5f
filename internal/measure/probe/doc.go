// Package probe measures paths with real packets: sequence-numbered,
// timestamped UDP probes answered by the peer, long-lived TCP connections
// whose resets are counted, and polls of the API server and DNS. Each
// path's probes are judged in order, so every loss window has a start, an
// end and a duration.
package probe
