// Package demo runs hitless's main job end to end on a local cluster: the
// steps a new user watches to see what hitless does.
package demo
