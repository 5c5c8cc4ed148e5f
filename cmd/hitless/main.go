// Command hitless makes day-2 operations on a Kubernetes cluster's network
// layer safe and measured.
package main

import (
	"os"

	"github.com/hitless-dev/hitless/internal/cli/app"
)

func main() { os.Exit(app.Main()) }
