// Package resume implements `hitless resume`.
package resume
