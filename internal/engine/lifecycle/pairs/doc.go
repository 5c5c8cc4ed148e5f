// Package pairs holds the tests that take real releases of network
// plugins both ways (upgrade and downgrade, each rolled back), as shipped
// and with live customizations, on a cluster of their own.
package pairs
