package localcluster

import (
	"context"
	"fmt"

	"github.com/hitless-dev/hitless/internal/localcluster/openshift"
)

// simulatorProcess names the OpenShift simulator's process.
const simulatorProcess = "openshift-simulator"

// startOpenShift installs the OpenShift SDN objects and starts the
// simulator of the operators as one of the cluster's processes.
func (c *Cluster) startOpenShift(ctx context.Context, opts Options) error {
	_, cfg, err := c.Client()
	if err != nil {
		return err
	}
	if err := openshift.Install(ctx, cfg, opts.OpenShiftCRDs); err != nil {
		return err
	}
	c.Flavor = FlavorOpenShift
	if opts.SimulatorBinary == "" {
		return fmt.Errorf("the openshift flavor needs the hitless binary to run its simulator")
	}
	proc, err := start(c.Dir, simulatorProcess, opts.SimulatorBinary, []string{"cluster", "simulate", "--kubeconfig", c.Kubeconfig}, c.Attached)
	if err != nil {
		return err
	}
	c.Processes = append(c.Processes, proc)
	return c.save()
}
