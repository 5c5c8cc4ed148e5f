// Package demo implements `hitless demo`.
package demo

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewCommand returns the `demo` command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	_ = streams
	return &cobra.Command{Use: "demo", Short: "placeholder"}
}
