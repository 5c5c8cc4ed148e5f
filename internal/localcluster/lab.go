package localcluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/lab"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// Data planes a local cluster can have.
const (
	LabNone  = ""
	LabNetNS = "netns"
	LabCNI   = "cni"
	// AgentPort is the port lab agents answer peers on, TCP and UDP.
	AgentPort = 9473
	// labPrefix is the node network's prefix length (172.30.0.0/16).
	labPrefix = 16
	// kubernetesService is the kubernetes Service's address: in the lab,
	// every node's namespace relays it to the API server.
	kubernetesService = "10.96.0.1:443"
	// ProbeImage is the image of hitless's probe pods, which the lab
	// kubelet runs with the hitless binary.
	ProbeImage = "ghcr.io/hitless-dev/hitless"
	// kubeletProcess names the lab kubelet's process.
	kubeletProcess = "lab-kubelet"
)

// labKubelet is the lab kubelet's configuration so far: its table of
// images (kube-router, flannel and hitless's own image built here, then
// the user's) and the CNI plugins nodes ship.
func labKubelet(ctx context.Context, res *binaries.Resolver, opts Options) (*kubelet.Config, error) {
	bins, err := res.Lab(ctx)
	if err != nil {
		return nil, err
	}
	images := kubelet.Images{}
	for _, img := range append([]kubelet.Image{
		{Repository: "cloudnativelabs/kube-router", Binary: bins[binaries.KubeRouter], Entrypoint: "/usr/local/bin/kube-router"},
		{Repository: "ghcr.io/flannel-io/flannel", Binary: bins[binaries.Flanneld], Entrypoint: "/opt/bin/flanneld"},
		{Repository: "flannel/flannel", Binary: bins[binaries.Flanneld], Entrypoint: "/opt/bin/flanneld"},
		{Repository: kubelet.Repository(ProbeImage), Binary: opts.KubeletBinary, Entrypoint: "/usr/local/bin/hitless"},
	}, opts.LabImages...) {
		images[img.Repository] = img
	}
	return &kubelet.Config{Images: images, CNIPlugins: filepath.Dir(bins[binaries.CNIBridge])}, nil
}

// agentProcess names the agent process of a node.
func agentProcess(node string) string { return "agent-" + node }

// startLab gives every node a network namespace with its InternalIP on a
// shared bridge and, when agentBinary names the hitless binary, runs one
// agent per node with its sockets in that namespace.
func (c *Cluster) startLab(ctx context.Context, cs kubernetes.Interface, nodes []NodeSpec, opts Options, kl *kubelet.Config) error {
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
	if kl != nil {
		if err := c.startKubelet(opts.KubeletBinary, kl); err != nil {
			return err
		}
		// The agents are pods: they start once a CNI is installed.
		return startAgentPods(ctx, cs, c.Name)
	}
	if opts.AgentBinary == "" {
		return nil
	}
	for _, n := range l.Nodes {
		if err := c.startAgent(opts.AgentBinary, n); err != nil {
			return err
		}
	}
	return waitAgents(ctx, cs, order)
}

// startKubelet starts the lab kubelet.
func (c *Cluster) startKubelet(binary string, kl *kubelet.Config) error {
	kl.Dir = filepath.Join(c.Dir, "lab")
	kl.Relay = kubernetesService
	kl.Upstream = net.JoinHostPort(loopback, strconv.Itoa(c.Ports["kube-apiserver"]))
	c.LabKubelet = kl
	if err := c.save(); err != nil {
		return err
	}
	proc, err := start(c.Dir, kubeletProcess, binary, []string{"cluster", "kubelet", "--dir", c.Dir}, c.Attached)
	if err != nil {
		return err
	}
	c.Processes = append(c.Processes, proc)
	return c.save()
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

// WaitAgents waits up to timeout until every lab node's agent has
// published its report (under --dataplane cni, once a CNI wired their
// pods).
func (c *Cluster) WaitAgents(ctx context.Context, timeout time.Duration) error {
	if c.Lab == nil {
		return fmt.Errorf("cluster %q has no lab, so no agents", c.Name)
	}
	cs, _, err := c.Client()
	if err != nil {
		return err
	}
	nodes := make([]string, 0, len(c.Lab.Nodes))
	for _, n := range c.Lab.Nodes {
		nodes = append(nodes, n.Name)
	}
	return waitAgentsFor(ctx, cs, nodes, timeout)
}

// waitAgents waits until every node's agent has published its report.
func waitAgents(ctx context.Context, cs kubernetes.Interface, nodes []string) error {
	return waitAgentsFor(ctx, cs, nodes, time.Minute)
}

func waitAgentsFor(ctx context.Context, cs kubernetes.Interface, nodes []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
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
	Kind     string // link-down, loss, restart-agent, delete-link
	Duration time.Duration
	Percent  int
	Link     string // delete-link: the device (a data plane's, flannel.1)
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
		if c.LabKubelet != nil {
			return c.restartAgentPod(ctx, f.Node)
		}
		return c.Restart(ctx, agentProcess(f.Node))
	case "delete-link":
		return c.Lab.DeleteLink(f.Node, f.Link)
	}
	return fmt.Errorf("unknown fault %q: want link-down, loss, restart-agent or delete-link", f.Kind)
}

// restartAgentPod deletes the agent's pod on node (a lab kubelet's lab
// runs its agents as pods); the DaemonSet starts another.
func (c *Cluster) restartAgentPod(ctx context.Context, node string) error {
	cs, _, err := c.Client()
	if err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods("hitless-system").List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=hitless-agent", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return fmt.Errorf("finding the agent of node %s: %w", node, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("node %s has no agent pod (is a CNI installed?)", node)
	}
	for _, p := range pods.Items {
		if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("restarting the agent of node %s: %w", node, err)
		}
	}
	return nil
}

// LabAddress returns a lab node's agent address, for tests.
func (c *Cluster) LabAddress(node string) string {
	if c.Lab == nil {
		return ""
	}
	n, _ := c.Lab.NodeByName(node)
	return net.JoinHostPort(n.IP, strconv.Itoa(AgentPort))
}

// startAgentPods runs the lab's agents as pods on the pod network (the
// agent's own DaemonSet, --pod-network, with the machine's files as its
// root): the lab kubelet runs them once a CNI has wired their pods, and
// they probe each other pod to pod through the real data plane.
func startAgentPods(ctx context.Context, cs kubernetes.Interface, cluster string) error {
	m := labAgentManifest(cluster)
	dec := scheme.Codecs.UniversalDeserializer()
	for _, doc := range strings.Split(m, "\n---\n") {
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			return fmt.Errorf("the lab's agent manifest: %w", err)
		}
		if err := createObject(ctx, cs, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the lab's agents: %w", err)
		}
	}
	return nil
}

// labAgentManifest is the agents' manifest for the lab: the machine's
// files as their root, their node's namespace as the host's, no reboot.
func labAgentManifest(cluster string) string {
	m := agent.Manifest(agent.ManifestOptions{Image: ProbeImage + ":lab", PodNetwork: true})
	return strings.NewReplacer("--root=/host, --host-netns="+agent.HostNetNSOfPID1, "--root=/, --host-netns="+filepath.Join(lab.NetNSDir, lab.NodeNamespace(cluster, "$(NODE_NAME)")),
		", --allow-reboot", "").Replace(m)
}

func createObject(ctx context.Context, cs kubernetes.Interface, obj runtime.Object) error {
	var err error
	o := metav1.CreateOptions{}
	switch v := obj.(type) {
	case *corev1.Namespace:
		_, err = cs.CoreV1().Namespaces().Create(ctx, v, o)
	case *corev1.ServiceAccount:
		_, err = cs.CoreV1().ServiceAccounts(v.Namespace).Create(ctx, v, o)
	case *rbacv1.ClusterRole:
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, v, o)
	case *rbacv1.ClusterRoleBinding:
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, v, o)
	case *rbacv1.Role:
		_, err = cs.RbacV1().Roles(v.Namespace).Create(ctx, v, o)
	case *rbacv1.RoleBinding:
		_, err = cs.RbacV1().RoleBindings(v.Namespace).Create(ctx, v, o)
	case *appsv1.DaemonSet:
		_, err = cs.AppsV1().DaemonSets(v.Namespace).Create(ctx, v, o)
	default:
		err = fmt.Errorf("unexpected %T", obj)
	}
	return err
}
