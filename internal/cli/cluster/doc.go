// Package cluster implements `hitless cluster`: create, list, locate and
// delete local clusters.
package cluster
