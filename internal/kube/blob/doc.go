// Package blob packs values as gzip-compressed JSON for ConfigMap
// BinaryData, the form hitless keeps its records in inside the cluster.
package blob
