// Package checks implements `hitless checks`: past runs and the catalog.
package checks
