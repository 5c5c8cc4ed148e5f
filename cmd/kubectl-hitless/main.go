// Command kubectl-hitless is hitless installed as a kubectl plugin, so that
// `kubectl hitless ...` works.
package main

import (
	"os"

	"github.com/hitless-dev/hitless/internal/cli/app"
)

func main() { os.Exit(app.Main()) }
