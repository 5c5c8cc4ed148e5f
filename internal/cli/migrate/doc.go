// Package migrate implements `hitless migrate`: list, show, run and roll
// back migration plans.
package migrate
