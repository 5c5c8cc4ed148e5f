// Package node answers the questions every part of hitless asks of a
// Node object: is it Ready, is it a control-plane node, what is its
// InternalIP.
package node
