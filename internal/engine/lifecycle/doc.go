// Package lifecycle installs, upgrades, rolls back and uninstalls
// components: plan first, validate before any change, carry the user's
// customizations three-way, back up, apply in dependency order, roll the
// data plane node by node, and journal every step so the same command
// resumes after a crash.
package lifecycle
