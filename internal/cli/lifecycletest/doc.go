// Package lifecycletest runs hitless's component commands against a test
// package's local cluster and compares the objects they leave: the
// helpers the lifecycle integration tests share.
package lifecycletest
