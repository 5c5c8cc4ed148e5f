// Package params reads the files checks take as input, the cluster's
// network parameters and a compatibility matrix, and rejects malformed
// ones with errors naming the file and field.
package params
