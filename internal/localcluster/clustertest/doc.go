// Package clustertest runs a test package's integration tests against one
// real local cluster, with a fresh namespace per test and helpers to add
// nodes and create workloads, PodDisruptionBudgets and unmanaged pods.
//
// A test package declares its environment and hands TestMain to it:
//
//	var env = clustertest.New(clustertest.Options{Workers: 3})
//
//	func TestMain(m *testing.M) { os.Exit(env.Run(m)) }
//
// Under -short no cluster starts and every test that asks env for a client
// is skipped.
package clustertest
