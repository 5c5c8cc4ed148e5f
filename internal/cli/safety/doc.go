// Package safety holds no code: its tests hold the CLI to its safety
// promises end to end, on a cluster of their own: bad input to any
// mutating command exits 2, names the file, object and field or the flag,
// and leaves every object as it was; no output, record or log ever shows
// a Secret's value.
package safety
