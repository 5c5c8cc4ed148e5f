// Package demo implements `hitless demo`.
package demo
