// Package bench measures the per-node cutover against its floor on a
// KWOK cluster of 20 and 200 nodes (bash hack/bench.sh Cutover). Its data
// planes are KWOK DaemonSets, a model of the pods' lifecycle: what is
// measured is hitless's own work around the drain and the new pod's
// start, not a data plane's.
package bench
