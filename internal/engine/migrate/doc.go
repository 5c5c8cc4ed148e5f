// Package migrate runs migration plans: each step journaled before it
// acts and gated on the cluster's state, paused with a reason when the
// cluster degrades, resumed by running the same plan again, and undone
// step by step, newest first.
package migrate
