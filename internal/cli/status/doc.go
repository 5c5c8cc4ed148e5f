// Package status implements `hitless status`.
package status
