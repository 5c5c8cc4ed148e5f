// Package store keeps hitless's records in the cluster, in the
// hitless-system namespace it owns: operation journals, check runs,
// component revisions and backups, agent reports and probe results. Each
// record is one ConfigMap (or, when it may hold credentials, one Secret)
// holding one value as gzip-compressed JSON under one key, labelled so a
// kind of record is listed with one request. Every kind of record is
// written, read, listed, decoded and sorted by the same code: Records.
package store
