package preflight

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/checkrun"
)

// NewCommand returns the `preflight` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	return checkrun.NewCommand(profile.Preflight,
		"Check the cluster before an operation: nodes, capacity, drainability, workloads, platform, network parameters, versions, and each node through its agent",
		`Runs the profile's checks in parallel over one snapshot of the cluster (one
paginated LIST per resource type, whatever its size), asks the node agents for
fresh node-level results (kernel, modules, resolv.conf, MTU, resources, clock,
ports, hugepages) and folds them in. Nothing in the cluster changes, except
that the run is recorded in hitless-system ('hitless checks history').

Exit codes: 0 no hard check failed, 1 a hard check failed, 2 bad input (an
unknown profile, a malformed -f or --matrix file).

JSON (-o json): {"id", "kind", "profile", "started", "durationMs",
"results": [{"id", "title", "node", "status": pass|warn|fail|skip|error,
"severity": hard|soft, "message", "objects": ["Kind/namespace/name" or
"Kind/name"], "remediation", "durationMs"}], "summary": {"total", "pass",
"warn", "fail", "skip", "error", "blocking", "ok"}}`,
		`  hitless preflight
  hitless preflight --profile openshift-ovn-migration -f params.yaml --junit preflight.xml
  hitless preflight --profile tungsten-issu --matrix matrix.yaml -o json`,
		streams, getter)
}
