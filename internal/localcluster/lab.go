package localcluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// Data planes a local cluster can have.
const (
	LabNone  = ""
	LabNetNS = "netns"
	// AgentPort is the port lab agents answer peers on, TCP and UDP.
	AgentPort = 9473
	// labPrefix is the node network's prefix length (172.30.0.0/16).
	labPrefix = 16
)

// agentProcess names the agent process of a node.
func agentProcess(node string) string { return "agent-" + node }

// startLab gives every node a network namespace with its InternalIP on a
// shared bridge and, when agentBinary names the hitless binary, runs one
// agent per node with its sockets in that namespace.
func (c *Cluster) startLab(ctx context.Context, cs kubernetes.Interface, nodes []NodeSpec, agentBinary string) error {
	ips := map[string]string{}
	order := make([]string, 0, len(nodes))
	for _, w := range nodes {
		ips[w.Name] = NodeIP(w.Index)
		order = append(order, w.Name)
	}
	l := lab.Plan(c.Name, labPrefix, ips, order)
	c.Lab = l
	if err := c.save(); err != nil {
		return err
	}
	if err := l.Create(); err != nil {
		return fmt.Errorf("creating the netns data plane (needs root): %w", err)
	}
	if agentBinary == "" {
		return nil
	}
	for _, n := range l.Nodes {
		if err := c.startAgent(agentBinary, n); err != nil {
			return err
		}
	}
	return waitAgents(ctx, cs, order)
}

func (c *Cluster) startAgent(binary string, n lab.Node) error {
	args := []string{"agent", "--kubeconfig", c.Kubeconfig, "--node-name", n.Name, "--netns", n.Path(),
		"--listen", n.IP, "--advertise", n.IP, "--follow-data-plane", "--tcp-port", strconv.Itoa(AgentPort), "--udp-port", strconv.Itoa(AgentPort)}
	proc, err := start(c.Dir, agentProcess(n.Name), binary, args, c.Attached)
	if err != nil {
		return err
	}
	c.Processes = append(c.Processes, proc)
	return c.save()
}

// waitAgents waits until every node's agent has published its report.
func waitAgents(ctx context.Context, cs kubernetes.Interface, nodes []string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := cs.CoreV1().ConfigMaps("hitless-system").List(ctx, metav1.ListOptions{LabelSelector: "hitless.dev/agent-report"})
		if err == nil {
			seen := map[string]bool{}
			for _, cm := range l.Items {
				seen[strings.TrimPrefix(cm.Name, "hitless-agent-")] = true
			}
			missing := 0
			for _, n := range nodes {
				if !seen[n] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			err = fmt.Errorf("%d of %d agents have not reported", missing, len(nodes))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for the lab agents: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Fault injects a fault into a lab node: link-down for d, loss of percent
// (0 removes it), or a restart of the node's agent.
type Fault struct {
	Node     string
	Kind     string // link-down, loss, restart-agent
	Duration time.Duration
	Percent  int
}

// Inject applies f to the cluster's lab and, for link-down, restores the
// link after f.Duration.
func (c *Cluster) Inject(ctx context.Context, f Fault) error {
	if c.Lab == nil {
		return fmt.Errorf("cluster %q has no netns data plane: start it with --dataplane netns", c.Name)
	}
	if _, ok := c.Lab.NodeByName(f.Node); !ok {
		return fmt.Errorf("node %q is not a lab node of cluster %q", f.Node, c.Name)
	}
	switch f.Kind {
	case "link-down":
		if err := c.Lab.SetLink(f.Node, false); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.Duration):
		}
		return c.Lab.SetLink(f.Node, true)
	case "loss":
		return c.Lab.SetLoss(f.Node, f.Percent)
	case "restart-agent":
		return c.Restart(ctx, agentProcess(f.Node))
	}
	return fmt.Errorf("unknown fault %q: want link-down, loss or restart-agent", f.Kind)
}

// LabAddress returns a lab node's agent address, for tests.
func (c *Cluster) LabAddress(node string) string {
	if c.Lab == nil {
		return ""
	}
	n, _ := c.Lab.NodeByName(node)
	return net.JoinHostPort(n.IP, strconv.Itoa(AgentPort))
}
