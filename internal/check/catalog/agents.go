package catalog

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hitless-dev/hitless/internal/check"
)

func agentChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "agents.reported", Heading: "Every node's agent answered this run", Fn: agentsReported},
		check.Func[*Input]{Name: "agents.apiserver", Heading: "The API server is reachable from every node", Fn: agentsAPIServer},
		check.Func[*Input]{Name: "agents.connectivity", Heading: "Every node reaches every other over TCP and UDP", Fn: connectivity},
		check.Func[*Input]{Name: "agents.dns", Heading: "Cluster DNS resolves kubernetes.default from every node", Fn: agentsDNS},
	}
}

const deployAgents = "deploy the node agent: hitless agent manifest | kubectl apply -f - (on the local cluster: hitless agent --node-name NODE)"

func agentsReported(_ context.Context, in *Input) check.Outcome {
	if !in.AgentsAsked {
		return check.Skipped("agents not asked (--agent-timeout 0)")
	}
	if len(in.Agents) == 0 && len(in.Silent) == 0 {
		return check.Outcome{Status: check.Skip, Message: "no node agent runs in this cluster; node-level checks and measurements did not run", Remediation: deployAgents}
	}
	var missing []string
	for i := range in.Snap.Nodes {
		n := in.Snap.Nodes[i].Name
		if _, ok := in.Agents[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		why := fmt.Sprintf("%d of %d nodes have no fresh agent report", len(missing), len(in.Snap.Nodes))
		if len(in.Silent) > 0 {
			why += fmt.Sprintf(" (%d agents known but silent for %s: %s)", len(in.Silent), in.AgentTimeout, summarize(in.Silent))
		}
		return check.Outcome{Status: check.Fail, Message: why + "; their node-level checks did not run", Objects: refs(missing, nodeRef),
			Remediation: "check the agent pods on these nodes (kubectl -n hitless-system get pods -o wide); " + deployAgents}
	}
	return check.Passed("all %d nodes' agents answered", len(in.Snap.Nodes))
}

func agentsAPIServer(_ context.Context, in *Input) check.Outcome {
	if len(in.Agents) == 0 {
		return check.Skipped("no agent reports")
	}
	var bad, why []string
	var worst float64
	for _, n := range sortedNodes(in) {
		r := in.Agents[n]
		if !r.APIServer.OK {
			bad = append(bad, nodeRef(n))
			why = append(why, n+": "+r.APIServer.Error)
		}
		worst = max(worst, r.APIServer.LatencyMs)
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: "API server unreachable from " + summarize(why), Objects: bad,
			Remediation: "check the node's route and firewall to the API server, and the service account token"}
	}
	return check.Passed("reachable from %d nodes (slowest %.1f ms)", len(in.Agents), worst)
}

func sortedNodes(in *Input) []string {
	out := make([]string, 0, len(in.Agents))
	for n := range in.Agents {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// connectivity lays the agents' peer measurements out as a matrix: one
// row per source node, one column per destination.
func connectivity(_ context.Context, in *Input) check.Outcome {
	nodes := sortedNodes(in)
	if len(nodes) < 2 {
		return check.Skipped("fewer than two agent reports")
	}
	cell := map[[2]string]string{}
	var bad, why []string
	pairs := 0
	for _, from := range nodes {
		for _, p := range in.Agents[from].Peers {
			pairs++
			switch {
			case p.TCP && p.UDP:
				cell[[2]string{from, p.Node}] = "ok"
			case p.TCP:
				cell[[2]string{from, p.Node}] = "UDP"
			case p.UDP:
				cell[[2]string{from, p.Node}] = "TCP"
			default:
				cell[[2]string{from, p.Node}] = "X"
			}
			if !p.TCP || !p.UDP {
				bad = append(bad, nodeRef(from), nodeRef(p.Node))
				e := strings.TrimSpace(p.TCPError + " " + p.UDPError)
				why = append(why, fmt.Sprintf("%s -> %s: %s", from, p.Node, e))
			}
		}
	}
	if len(bad) == 0 {
		return check.Passed("%d node pairs reach each other over TCP and UDP", pairs)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d node pairs fail (cell: ok, TCP or UDP = that protocol fails, X = both fail, . = not measured): %s\n", len(why), pairs, summarize(why))
	width := 0
	for _, n := range nodes {
		width = max(width, len(n))
	}
	fmt.Fprintf(&b, "%-*s", width+4, "from\\to")
	for i := range nodes {
		fmt.Fprintf(&b, " %-4d", i+1)
	}
	for i, from := range nodes {
		fmt.Fprintf(&b, "\n%-3d %-*s", i+1, width, from)
		for _, to := range nodes {
			c := cell[[2]string{from, to}]
			switch {
			case from == to:
				c = "-"
			case c == "":
				c = "."
			}
			fmt.Fprintf(&b, " %-4s", c)
		}
	}
	return check.Outcome{Status: check.Fail, Message: b.String(), Objects: dedupe(bad),
		Remediation: "check the firewall and routes between the nodes named (the agents' port), and the CNI's own health"}
}

func agentsDNS(_ context.Context, in *Input) check.Outcome {
	if in.Snap.DNSService == nil {
		return check.Skipped("the cluster has no DNS Service (kube-system/kube-dns)")
	}
	if len(in.Agents) == 0 {
		return check.Skipped("no agent reports")
	}
	var bad, why []string
	for _, n := range sortedNodes(in) {
		d := in.Agents[n].DNS
		if d == nil || !d.OK {
			bad = append(bad, nodeRef(n))
			e := "not measured"
			if d != nil {
				e = d.Error
			}
			why = append(why, n+": "+e)
		}
	}
	if len(bad) > 0 {
		return check.Outcome{Status: check.Fail, Message: "kubernetes.default does not resolve from " + summarize(why), Objects: bad,
			Remediation: "check the DNS pods, the kube-dns Service and the path from the nodes to it"}
	}
	return check.Passed("kubernetes.default resolves from %d nodes", len(in.Agents))
}
