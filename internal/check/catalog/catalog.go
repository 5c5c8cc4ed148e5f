package catalog

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/params"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// Input is what every cluster-level check reads.
type Input struct {
	Kind    string
	Snap    *snapshot.Snapshot
	Client  kubernetes.Interface
	Profile *profile.Profile
	Network *params.Network
	Matrix  *params.Matrix
	// Agents are the fresh reports by node; Silent the known agents that
	// did not answer within AgentTimeout.
	Agents       map[string]*agent.Report
	Silent       []string
	AgentsAsked  bool
	AgentTimeout time.Duration
	// Namespace and Selector narrow the workload checks (a component's
	// rollouts); empty means all.
	Namespace   string
	Selector    labels.Selector
	NetworkType string
}

// All returns every cluster-level check.
func All() []check.Check[*Input] {
	var out []check.Check[*Input]
	for _, group := range [][]check.Check[*Input]{nodeChecks(), drainChecks(), workloadChecks(), platformChecks(), networkChecks(), versionChecks(), agentChecks()} {
		out = append(out, group...)
	}
	return out
}

// OptionError is a bad option: exit code 2.
type OptionError struct {
	Flag string
	Msg  string
}

func (e *OptionError) Error() string { return "--" + e.Flag + ": " + e.Msg }

// Options are a check run's settings.
type Options struct {
	Kind        string // profile.Preflight or profile.Postflight
	Profile     string
	NetworkFile string // -f: network parameters
	// Network are network parameters given in memory (a plan's); not
	// with NetworkFile.
	Network    *params.Network
	MatrixFile string // --matrix: compatibility matrix
	// AgentTimeout bounds the wait for the agents' fresh results; 0 does
	// not ask them.
	AgentTimeout time.Duration
	CheckTimeout time.Duration
	Namespace    string
	Selector     string
	NetworkType  string
	// NoRecord leaves the run out of the cluster's history.
	NoRecord bool
}

// Prepared is a run whose inputs are validated; nothing in the cluster
// has changed yet.
type Prepared struct {
	opts     Options
	profile  *profile.Profile
	network  *params.Network
	matrix   *params.Matrix
	selector labels.Selector
}

// Prepare validates the options and reads the input files. Its errors are
// *OptionError or *params.Error.
func Prepare(opts Options) (*Prepared, error) {
	if opts.Kind != profile.Preflight && opts.Kind != profile.Postflight {
		return nil, &OptionError{Flag: "kind", Msg: fmt.Sprintf("unknown kind %q", opts.Kind)}
	}
	p, err := profile.Get(opts.Profile)
	if err != nil {
		return nil, &OptionError{Flag: "profile", Msg: err.Error()}
	}
	if opts.CheckTimeout < 0 {
		return nil, &OptionError{Flag: "check-timeout", Msg: "must not be negative"}
	}
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 60 * time.Second
	}
	if opts.AgentTimeout < 0 {
		return nil, &OptionError{Flag: "agent-timeout", Msg: "must not be negative"}
	}
	prep := &Prepared{opts: opts, profile: p, network: opts.Network}
	if opts.NetworkFile != "" && opts.Network != nil {
		return nil, &OptionError{Flag: "filename", Msg: "network parameters are given twice"}
	}
	if opts.NetworkFile != "" {
		if prep.network, err = params.ReadNetwork(opts.NetworkFile); err != nil {
			return nil, err
		}
	}
	if opts.MatrixFile != "" {
		if prep.matrix, err = params.ReadMatrix(opts.MatrixFile); err != nil {
			return nil, err
		}
	}
	if opts.Selector != "" {
		if prep.selector, err = labels.Parse(opts.Selector); err != nil {
			return nil, &OptionError{Flag: "selector", Msg: err.Error()}
		}
	}
	return prep, nil
}

// Run asks the agents for fresh results, takes the snapshot, runs the
// profile's checks in parallel, folds in the agents' node results and
// records the run. A failing check is a result, not an error; errors are
// for runs that could not happen.
func (prep *Prepared) Run(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) (*check.Report, error) {
	opts, p := prep.opts, prep.profile
	started := time.Now()
	rep := &check.Report{ID: check.NewRunID(opts.Kind, started), Kind: opts.Kind, Profile: p.Name, Started: started.UTC()}
	log := klog.FromContext(ctx).WithValues("run", rep.ID)

	asked := opts.AgentTimeout > 0
	if asked {
		if err := agent.Ask(ctx, cs, agent.Request{ID: rep.ID, Profile: p.Name, Asked: started}); err != nil {
			return nil, err
		}
	}
	snap, err := snapshot.Take(ctx, cs, dyn)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster: %w", err)
	}
	log.V(2).Info("snapshot taken", "nodes", len(snap.Nodes), "pods", len(snap.Pods), "took", time.Since(started))
	in := &Input{Kind: opts.Kind, Snap: snap, Client: cs, Profile: p, Network: prep.network, Matrix: prep.matrix,
		AgentsAsked: asked, AgentTimeout: opts.AgentTimeout, Namespace: opts.Namespace, Selector: prep.selector,
		NetworkType: opts.NetworkType}
	if in.NetworkType == "" {
		in.NetworkType = p.NetworkType
	}
	if asked {
		fresh, silent, err := agent.Await(ctx, cs, rep.ID, opts.AgentTimeout)
		if err != nil {
			return nil, err
		}
		in.Agents = fresh
		exists := map[string]bool{}
		for i := range snap.Nodes {
			exists[snap.Nodes[i].Name] = true
		}
		for _, n := range silent {
			if exists[n] {
				in.Silent = append(in.Silent, n)
			}
		}
		log.V(2).Info("agents answered", "fresh", len(fresh), "silent", len(in.Silent))
	}

	var selected []check.Check[*Input]
	for _, c := range All() {
		if _, ok := p.Severity(opts.Kind, c.ID()); ok {
			selected = append(selected, c)
		}
	}
	severity := func(id string) check.Severity { s, _ := p.Severity(opts.Kind, id); return s }
	rep.Results = check.Run(ctx, selected, in, severity, opts.CheckTimeout)
	rep.Results = append(rep.Results, nodeResults(in, severity)...)
	rep.DurationMs = time.Since(started).Milliseconds()
	rep.Summarize()
	if !opts.NoRecord {
		if err := check.NewStore(cs).Record(ctx, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// nodeResults takes the profile's node checks from each fresh agent
// report, with the profile's severity.
func nodeResults(in *Input, severity func(string) check.Severity) []check.Result {
	var out []check.Result
	for _, n := range sortedNodes(in) {
		for _, r := range in.Agents[n].Results {
			if _, ok := in.Profile.Severity(in.Kind, r.ID); !ok {
				continue
			}
			r.Node = n
			r.Severity = severity(r.ID)
			if r.Objects == nil {
				r.Objects = []string{}
			}
			out = append(out, r)
		}
	}
	return out
}
