// Package postflight implements `hitless postflight`.
package postflight
