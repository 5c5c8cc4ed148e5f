package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
)

// EnvHome overrides where local clusters keep their state.
const EnvHome = "HITLESS_HOME"

// DefaultName is the cluster name used when none is given.
const DefaultName = "hitless"

// ErrNotFound is returned for a cluster name with no state on this machine.
var ErrNotFound = errors.New("no such local cluster")

// ErrExists is returned by Up when a running cluster already has the name.
var ErrExists = errors.New("local cluster already exists")

// InvalidError is bad input to Up: nothing was started.
type InvalidError struct{ Field, Msg string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

// Options configure a new local cluster.
type Options struct {
	Name              string
	Nodes             int // workers
	ControlPlaneNodes int
	NodeLabels        map[string]string // added to every worker
	// Home is the state directory; empty means Home().
	Home string
	// Attached ties the components' lives to this process (test clusters).
	Attached bool
	// Binaries resolves the component binaries; nil means NewResolver.
	Binaries *binaries.Resolver
	// Progress receives one line per step. May be nil.
	Progress io.Writer
	// Lab is "" (none), "netns" (a network namespace per node, agents in
	// them, the data plane a model: a node's link follows its data-plane
	// pod) or "cni" (the same namespaces, the lab kubelet running real
	// CNI daemons in them, agents as pods on the pod network).
	Lab string
	// QuickTermination ends a deleted pod at once instead of after its
	// grace period, for tests about objects rather than timing.
	QuickTermination bool
	// AgentBinary is the hitless binary the netns data plane runs one
	// agent per worker with; "" runs none.
	AgentBinary string
	// KubeletBinary is the hitless binary the netns data plane runs its
	// lab kubelet with ("" runs none): the real daemons of the DaemonSet
	// pods whose images it knows (kube-router; LabImages add more) run in
	// the nodes' namespaces, and KWOK leaves those pods to it.
	KubeletBinary string
	LabImages     []kubelet.Image
	// Flavor is "" (plain Kubernetes) or "openshift": a rehearsal cluster
	// with the OpenShift CRDs from OpenShiftCRDs, the objects of an
	// OpenShift SDN cluster, and the simulator of its network and
	// machine-config operators run by SimulatorBinary (the hitless
	// binary, `cluster simulate`).
	Flavor          string
	OpenShiftCRDs   string
	SimulatorBinary string
}

// FlavorOpenShift is the OpenShift rehearsal flavor.
const FlavorOpenShift = "openshift"

// Cluster is the recorded state of a local cluster.
type Cluster struct {
	Name       string    `json:"name"`
	Dir        string    `json:"dir"`
	Kubeconfig string    `json:"kubeconfig"`
	Server     string    `json:"server"`
	Created    time.Time `json:"created"`
	Workers    int       `json:"workers"`
	Controls   int       `json:"controlPlaneNodes"`
	Processes  []Process `json:"processes"`
	// Ports are the loopback ports the components listen on, by component.
	Ports map[string]int `json:"ports"`
	// Attached components die with the process that started them.
	Attached bool `json:"attached,omitempty"`
	// Lab is the netns data plane, when the cluster has one.
	Lab *lab.Lab `json:"lab,omitempty"`
	// LabKubelet is what the lab kubelet serves, when it runs.
	LabKubelet *kubelet.Config `json:"labKubelet,omitempty"`
	// Flavor is "" or openshift.
	Flavor string `json:"flavor,omitempty"`
	// AuditLog is the API server's audit log of the requests
	// ServiceAccounts make (JSON lines, audit.k8s.io/v1 Events).
	AuditLog string `json:"auditLog,omitempty"`
}

// Running reports whether every component process is alive.
func (c *Cluster) Running() bool {
	if len(c.Processes) == 0 {
		return false
	}
	for _, p := range c.Processes {
		if !alive(p) {
			return false
		}
	}
	return true
}

// Home returns the directory under which local clusters keep their state.
func Home() (string, error) {
	if h := os.Getenv(EnvHome); h != "" {
		return h, nil
	}
	if s := os.Getenv("XDG_STATE_HOME"); s != "" {
		return filepath.Join(s, "hitless"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "hitless"), nil
}

// ValidateName checks that name can name a cluster: a DNS-1123 label short
// enough to prefix its node names.
func ValidateName(name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return &InvalidError{Field: "--name", Msg: fmt.Sprintf("%q is not a valid cluster name: %s", name, strings.Join(msgs, "; "))}
	}
	if len(name) > 40 {
		return &InvalidError{Field: "--name", Msg: fmt.Sprintf("%q is longer than 40 characters", name)}
	}
	return nil
}

// Validate checks the options without touching anything.
func (o *Options) Validate() error {
	if err := ValidateName(o.Name); err != nil {
		return err
	}
	if o.Nodes < 0 || o.Nodes > 10000 {
		return &InvalidError{Field: "--nodes", Msg: fmt.Sprintf("%d is out of range: want 0 to 10000 worker nodes", o.Nodes)}
	}
	if o.ControlPlaneNodes < 1 || o.ControlPlaneNodes > 7 {
		return &InvalidError{Field: "--control-plane-nodes", Msg: fmt.Sprintf("%d is out of range: want 1 to 7", o.ControlPlaneNodes)}
	}
	if o.Lab != LabNone && o.Lab != LabNetNS && o.Lab != LabCNI {
		return &InvalidError{Field: "--dataplane", Msg: fmt.Sprintf("%q: want netns, cni or nothing", o.Lab)}
	}
	if o.Lab != LabNone && o.Nodes+o.ControlPlaneNodes > 250 {
		return &InvalidError{Field: "--nodes", Msg: fmt.Sprintf("%d nodes: the netns data plane takes at most 250", o.Nodes+o.ControlPlaneNodes)}
	}
	switch o.Flavor {
	case "":
	case FlavorOpenShift:
		if o.OpenShiftCRDs == "" {
			return &InvalidError{Field: "--openshift-crds", Msg: "the openshift flavor needs a directory of openshift/api's CRD manifests (ClusterOperator, Network config and operator, MachineConfigPool, MachineConfig)"}
		}
		if st, err := os.Stat(o.OpenShiftCRDs); err != nil || !st.IsDir() {
			return &InvalidError{Field: "--openshift-crds", Msg: fmt.Sprintf("%q is not a directory", o.OpenShiftCRDs)}
		}
	default:
		return &InvalidError{Field: "--flavor", Msg: fmt.Sprintf("%q: want openshift or nothing", o.Flavor)}
	}
	for k, v := range o.NodeLabels {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return &InvalidError{Field: "--node-labels", Msg: fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; "))}
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return &InvalidError{Field: "--node-labels", Msg: fmt.Sprintf("value %q of %q: %s", v, k, strings.Join(msgs, "; "))}
		}
	}
	return nil
}

func statePath(dir string) string { return filepath.Join(dir, "cluster.json") }

// Open loads the state of the cluster whose directory is dir.
func Open(dir string) (*Cluster, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("reading cluster state: %w", err)
	}
	c, err := parseState(filepath.Base(dir), b)
	if err != nil {
		return nil, fmt.Errorf("reading cluster state %s: %w", statePath(dir), err)
	}
	return c, nil
}

// Get loads the state of the named cluster.
func Get(home, name string) (*Cluster, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(filepath.Join(home, "clusters", name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading cluster %q: %w", name, err)
	}
	c, err := parseState(name, b)
	if err != nil {
		return nil, fmt.Errorf("reading cluster %q state %s: %w", name, statePath(filepath.Join(home, "clusters", name)), err)
	}
	return c, nil
}

// parseState reads a cluster.json and refuses one that cannot be the
// named cluster's: another name, a process without a PID or a program
// (cluster down signals what it names), a port out of range.
func parseState(name string, b []byte) (*Cluster, error) {
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.Name != name {
		return nil, fmt.Errorf("it describes cluster %q", c.Name)
	}
	for i, p := range c.Processes {
		if p.PID <= 0 || p.Binary == "" {
			return nil, fmt.Errorf("processes[%d] (%q): pid %d, binary %q: want a positive pid and a program", i, p.Name, p.PID, p.Binary)
		}
	}
	for k, port := range c.Ports {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("ports.%s: %d is not a port", k, port)
		}
	}
	return &c, nil
}

// List returns every local cluster recorded under home, by name.
func List(home string) ([]*Cluster, error) {
	entries, err := os.ReadDir(filepath.Join(home, "clusters"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing clusters: %w", err)
	}
	var out []*Cluster
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := Get(home, e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding cluster %q state: %w", c.Name, err)
	}
	tmp := statePath(c.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing cluster %q state: %w", c.Name, err)
	}
	if err := os.Rename(tmp, statePath(c.Dir)); err != nil {
		return fmt.Errorf("writing cluster %q state: %w", c.Name, err)
	}
	return nil
}

// Down stops every process of the named cluster and removes its state.
func Down(ctx context.Context, home, name string) error {
	c, err := Get(home, name)
	if err != nil {
		return err
	}
	return c.teardown(ctx)
}

// teardown stops the components in reverse start order, then deletes the
// state directory.
func (c *Cluster) teardown(ctx context.Context) error {
	var errs []error
	for _, p := range slices.Backward(c.Processes) {
		if err := stop(ctx, p, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Lab != nil {
		if err := c.Lab.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stopping cluster %q: %w", c.Name, errors.Join(errs...))
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("removing cluster %q state %s: %w", c.Name, c.Dir, err)
	}
	klog.V(1).InfoS("local cluster removed", "cluster", c.Name)
	return nil
}
