package postflight

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/cli/checkrun"
)

// NewCommand returns the `postflight` command.
func NewCommand(streams genericiooptions.IOStreams, getter genericclioptions.RESTClientGetter) *cobra.Command {
	return checkrun.NewCommand(profile.Postflight,
		"Prove the cluster healthy after an operation: nodes, pods, rollouts, API server from every node, node-to-node TCP and UDP, DNS",
		`Checks every node Ready, every pod Running or Completed (the others listed
with their reason), the rollouts complete (narrow them with -l and
--workload-namespace to one component), and, measured by the node agents, the
API server reachable from every node, a node-to-node connectivity matrix over
TCP and UDP, and kubernetes.default resolving through the cluster DNS. On
OpenShift, ClusterOperators healthy and the network type as expected.

Exit codes and JSON as for 'hitless preflight'.`,
		`  hitless postflight
  hitless postflight -l app.kubernetes.io/part-of=sample-plugin -o json
  hitless postflight --profile openshift-ovn-migration --junit postflight.xml`,
		streams, getter)
}
