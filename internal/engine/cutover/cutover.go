package cutover

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/kube/transient"
	"github.com/hitless-dev/hitless/internal/measure/agent"
)

// ActionName is the per-node cutover action's name in a roll.
const ActionName = "cutover"

// Defaults.
const (
	// DefaultLabel is the node label whose value selects a node's data
	// plane.
	DefaultLabel = "hitless.dev/data-plane"
	// DefaultAgents are hitless's node agents (namespace/DaemonSet).
	DefaultAgents = "hitless-system/hitless-agent"
	agentPort     = "9473"
)

// DataPlane is one of the two data planes: the DaemonSet whose pods are
// a node's data plane, the label value that puts a node on it, and what
// it leaves on a node it ran on.
type DataPlane struct {
	// DaemonSet is namespace/name.
	DaemonSet string `json:"daemonSet"`
	// Value of the data-plane label on the nodes it runs on.
	Value string `json:"value"`
	// CNIConfigs are the files it writes in /etc/cni/net.d.
	CNIConfigs []string `json:"cniConfigs,omitempty"`
	// Links are the network devices it creates on a node.
	Links []string `json:"links,omitempty"`
	// Annotations are prefixes of the node annotations it writes.
	Annotations []string `json:"annotations,omitempty"`
}

// Params are the cutover action's parameters.
type Params struct {
	// Label is the node label that selects a node's data plane (default
	// hitless.dev/data-plane).
	Label string    `json:"label,omitempty"`
	From  DataPlane `json:"from"`
	To    DataPlane `json:"to"`
	// Agents are hitless's node agents (namespace/DaemonSet, default
	// hitless-system/hitless-agent): a node's agent removes what From left
	// and verifies pod to pod.
	Agents string `json:"agents,omitempty"`
	// SkipVerify leaves out the pod-to-pod verification.
	SkipVerify bool `json:"skipVerify,omitempty"`
	// VerifyWithin is how long the node may take to reach its peers pod
	// to pod once the new data-plane pod is Ready (routes converging,
	// BGP sessions coming up; default 2m).
	VerifyWithin Duration `json:"verifyWithin,omitempty"`
}

// Duration is a time.Duration written as text ("90s").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "90s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return json.Unmarshal(b, &d.Duration)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Inverse is the cutover that moves a node back.
func (p Params) Inverse() Params {
	q := p
	q.From, q.To = p.To, p.From
	return q
}

// Type is the cutover action type, to register in a roll.Actions.
func Type() roll.ActionType {
	return roll.ActionType{Name: ActionName, New: func(raw json.RawMessage) (roll.Action, error) {
		p, err := Decode(raw)
		if err != nil {
			return nil, err
		}
		return action{p}, nil
	}, Inverse: func(raw json.RawMessage) (json.RawMessage, error) {
		p, err := Decode(raw)
		if err != nil {
			return nil, err
		}
		return json.Marshal(p.Inverse())
	}}
}

// Decode reads and validates the parameters, defaults filled in.
func Decode(raw json.RawMessage) (Params, error) {
	var p Params
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return p, &roll.SpecError{Field: "actions.cutover", Msg: err.Error()}
	}
	if p.Label == "" {
		p.Label = DefaultLabel
	}
	if p.Agents == "" {
		p.Agents = DefaultAgents
	}
	if p.VerifyWithin.Duration == 0 {
		p.VerifyWithin.Duration = 2 * time.Minute
	}
	return p, p.validate()
}

func (p Params) validate() error {
	bad := func(field, msg string) error {
		return &roll.SpecError{Field: "actions.cutover." + field, Msg: msg}
	}
	if msgs := validation.IsQualifiedName(p.Label); len(msgs) > 0 {
		return bad("label", fmt.Sprintf("%q: %s", p.Label, strings.Join(msgs, "; ")))
	}
	if err := namespaced(p.Agents); err != nil {
		return bad("agents", err.Error())
	}
	for _, x := range []struct {
		field string
		d     DataPlane
	}{{"from", p.From}, {"to", p.To}} {
		if err := namespaced(x.d.DaemonSet); err != nil {
			return bad(x.field+".daemonSet", err.Error())
		}
		if x.d.Value == "" {
			return bad(x.field+".value", "the label value that selects this data plane is required")
		}
		if msgs := validation.IsValidLabelValue(x.d.Value); len(msgs) > 0 {
			return bad(x.field+".value", fmt.Sprintf("%q: %s", x.d.Value, strings.Join(msgs, "; ")))
		}
		t := agent.Task{ID: "validate", RemoveCNIConfigs: x.d.CNIConfigs, RemoveLinks: x.d.Links}
		if err := t.Validate(); err != nil {
			return bad(x.field, err.Error())
		}
		for _, a := range x.d.Annotations {
			if a == "" || strings.ContainsAny(a, " \t\n") {
				return bad(x.field+".annotations", fmt.Sprintf("%q is not an annotation prefix", a))
			}
		}
	}
	if p.From.Value == p.To.Value {
		return bad("to.value", fmt.Sprintf("both data planes are selected by %s=%s", p.Label, p.To.Value))
	}
	if p.From.DaemonSet == p.To.DaemonSet {
		return bad("to.daemonSet", "both data planes are DaemonSet "+p.To.DaemonSet)
	}
	for _, f := range p.From.CNIConfigs {
		if slices.Contains(p.To.CNIConfigs, f) {
			return bad("from.cniConfigs", fmt.Sprintf("%s is the new data plane's configuration too: removing it would remove the new one's", f))
		}
	}
	for _, l := range p.From.Links {
		if slices.Contains(p.To.Links, l) {
			return bad("from.links", fmt.Sprintf("device %s belongs to the new data plane too", l))
		}
	}
	return nil
}

func namespaced(ref string) error {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || validation.IsDNS1123Label(ns) != nil || validation.IsDNS1123Subdomain(name) != nil {
		return fmt.Errorf("%q: want NAMESPACE/NAME", ref)
	}
	return nil
}

type action struct{ p Params }

// RestartsDaemonSet is the new data plane's DaemonSet, whose pod's start
// the roll's estimate counts.
func (a action) RestartsDaemonSet() string { return a.p.To.DaemonSet }

// Run moves the node. Every step checks before it acts, so a rerun after
// a crash picks up where the node is: the label already switched, the
// old pod already gone, an agent task already done (its result is read,
// not redone).
func (a action) Run(ctx context.Context, t roll.Target) error {
	p := a.p
	log := klog.FromContext(ctx).WithValues("node", t.Node, "from", p.From.Value, "to", p.To.Value)
	say := func(msg string) {
		log.V(1).Info(msg)
		if t.Progress != nil {
			t.Progress(msg)
		}
	}
	c := &cluster{cs: t.Client, node: t.Node}
	n, err := c.cs.CoreV1().Nodes().Get(ctx, t.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", t.Node, err)
	}
	if n.Labels[p.Label] != p.To.Value {
		if err := c.patchNode(ctx, map[string]any{"labels": map[string]string{p.Label: p.To.Value}}); err != nil {
			return fmt.Errorf("switching node %s to data plane %s: %w", t.Node, p.To.Value, err)
		}
		say(fmt.Sprintf("%s: %s -> %s", p.Label, orNone(n.Labels[p.Label]), p.To.Value))
	}
	if err := c.waitGone(ctx, p.From.DaemonSet); err != nil {
		return err
	}
	if err := c.waitReady(ctx, p.To.DaemonSet, nil); err != nil {
		return err
	}
	say(fmt.Sprintf("DaemonSet %s gone, %s Ready", p.From.DaemonSet, p.To.DaemonSet))
	// The old configuration goes first, through the agent as it is wired
	// now: pods started from here on are wired by the new data plane. The
	// old devices go once the agent has answered (an agent on the pod
	// network may be wired through them); while they stay, a bridge of
	// the old plane would hold the node's pod subnet and blackhole the
	// pods the new one wires.
	if len(p.From.CNIConfigs)+len(p.From.Links) > 0 {
		res, err := c.task(ctx, p.Agents, agent.Task{ID: taskID(t.Operation, t.Node, p.To.Value, "config"),
			RemoveCNIConfigs: p.From.CNIConfigs, RemoveLinksLater: p.From.Links})
		if err != nil {
			return err
		}
		say(res.Summary())
	}
	n, err = c.cs.CoreV1().Nodes().Get(ctx, t.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", t.Node, err)
	}
	if stale := staleAnnotations(n, p.From.Annotations); len(stale) > 0 {
		if err := c.patchNode(ctx, map[string]any{"annotations": stale}); err != nil {
			return fmt.Errorf("removing data plane %s's annotations from node %s: %w", p.From.Value, t.Node, err)
		}
		say(fmt.Sprintf("removed %d annotation(s) of %s", len(stale), p.From.Value))
	}
	rewired, err := c.rewire(ctx, p.To.DaemonSet)
	if err != nil {
		return err
	}
	if rewired > 0 {
		say(fmt.Sprintf("re-wired %d pod-network pod(s) through %s", rewired, p.To.Value))
	}
	return a.verify(ctx, c, t, say)
}

// verify has the node's agent remove the old plane's devices left and
// probe, pod to pod, the agents of the nodes already on the new plane.
func (a action) verify(ctx context.Context, c *cluster, t roll.Target, say func(string)) error {
	p := a.p
	log := klog.FromContext(ctx).WithValues("node", t.Node, "to", p.To.Value)
	task := agent.Task{ID: taskID(t.Operation, t.Node, p.To.Value, "verify"), RemoveLinks: p.From.Links}
	if !p.SkipVerify {
		peers, err := c.peers(ctx, p.Agents, p.Label, p.To.Value)
		if err != nil {
			return err
		}
		task.Verify = peers
		if len(peers) == 0 {
			say("no other node on " + p.To.Value + " yet: pod to pod not verified")
		}
	}
	if len(task.RemoveLinks) == 0 && len(task.Verify) == 0 {
		return nil
	}
	// A data plane is Ready before its routes are everywhere (a BGP
	// session takes seconds): the verification is tried again until the
	// peers answer or VerifyWithin has passed. Each try is a task of its
	// own, so a rerun reads the tries already made.
	deadline := time.Now().Add(p.VerifyWithin.Duration)
	for try := 1; ; try++ {
		res, err := c.task(ctx, p.Agents, task)
		if err != nil {
			return err
		}
		if len(res.Unreached) == 0 {
			say(res.Summary())
			return nil
		}
		if time.Now().After(deadline) {
			say(res.Summary())
			return fmt.Errorf("node %s on %s does not reach %s pod to pod after %s (agents' UDP probes unanswered)", t.Node, p.To.Value, strings.Join(res.Unreached, ", "), p.VerifyWithin.Duration)
		}
		log.V(1).Info("peers not reached yet", "try", try, "unreached", res.Unreached)
		task = agent.Task{ID: taskID(t.Operation, t.Node, p.To.Value, fmt.Sprintf("verify-%d", try+1)), Verify: task.Verify}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// taskID names one agent task of one operation on one node.
func taskID(op, node, to, what string) string {
	h := sha256.Sum256([]byte(op + "/" + node + "/" + to + "/" + what))
	return what + "-" + hex.EncodeToString(h[:8])
}

// staleAnnotations are the node's annotations under the prefixes, as a
// merge patch that removes them.
func staleAnnotations(n *corev1.Node, prefixes []string) map[string]any {
	out := map[string]any{}
	for k := range n.Annotations {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out[k] = nil
			}
		}
	}
	return out
}

type cluster struct {
	cs   kubernetes.Interface
	node string
}

func (c *cluster) patchNode(ctx context.Context, meta map[string]any) error {
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	_, err = c.cs.CoreV1().Nodes().Patch(ctx, c.node, types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

// podsOf lists the pods of DaemonSet ref on the node; none if the
// DaemonSet is gone.
func (c *cluster) podsOf(ctx context.Context, ref string) ([]corev1.Pod, error) {
	pods, err := c.daemonSetPods(ctx, ref, c.node)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return pods, err
}

// daemonSetPods lists the pods of DaemonSet ref, on one node or ("")
// every node. A DaemonSet that is not found is an error apierrors
// recognises.
func (c *cluster) daemonSetPods(ctx context.Context, ref, node string) ([]corev1.Pod, error) {
	ns, name, _ := strings.Cut(ref, "/")
	ds, err := c.cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading DaemonSet %s: %w", ref, err)
	}
	opts := metav1.ListOptions{}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	list, err := c.cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing the pods of DaemonSet %s: %w", ref, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if o := metav1.GetControllerOf(&p); o != nil && o.UID == ds.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

// waitGone waits until no pod of DaemonSet ref is on the node: its
// controller removes it once the node's label no longer selects it.
func (c *cluster) waitGone(ctx context.Context, ref string) error {
	var left []string
	err := transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		pods, err := c.podsOf(ctx, ref)
		left = names(pods)
		return len(pods) == 0, err
	})
	if err != nil {
		return fmt.Errorf("waiting for DaemonSet %s's pod %s to leave node %s: %w", ref, strings.Join(left, ", "), c.node, err)
	}
	return nil
}

// waitReady waits until a pod of DaemonSet ref that is not in old is
// Ready on the node.
func (c *cluster) waitReady(ctx context.Context, ref string, old map[types.UID]bool) error {
	why := "no pod yet"
	err := transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		pods, err := c.podsOf(ctx, ref)
		for _, p := range pods {
			switch {
			case old[p.UID] || p.DeletionTimestamp != nil:
			case podutils.IsPodReady(&p):
				return true, nil
			default:
				why = "pod " + p.Name + " is " + string(p.Status.Phase) + ", not Ready"
			}
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("waiting for DaemonSet %s Ready on node %s (%s): %w", ref, c.node, why, err)
	}
	return nil
}

// rewire deletes the node's pods on the pod network that a DaemonSet
// keeps there (a drain left them, wired by the old data plane) and waits
// until each DaemonSet's replacement is Ready: the new data plane wires
// them.
func (c *cluster) rewire(ctx context.Context, newPlane string) (int, error) {
	list, err := c.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + c.node})
	if err != nil {
		return 0, fmt.Errorf("listing pods on node %s: %w", c.node, err)
	}
	old := map[types.UID]bool{}
	owners := map[string]bool{}
	for _, p := range list.Items {
		o := metav1.GetControllerOf(&p)
		if p.Spec.HostNetwork || p.DeletionTimestamp != nil || o == nil || o.Kind != "DaemonSet" || p.Namespace+"/"+o.Name == newPlane {
			continue
		}
		old[p.UID] = true
		owners[p.Namespace+"/"+o.Name] = true
		uid := p.UID
		err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, fmt.Errorf("restarting pod %s/%s on node %s: %w", p.Namespace, p.Name, c.node, err)
		}
	}
	for _, ref := range slices.Sorted(maps.Keys(owners)) {
		if err := c.waitReady(ctx, ref, old); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// peers are the UDP addresses of the Ready agents on the other nodes of
// data plane value.
func (c *cluster) peers(ctx context.Context, agents, label, value string) ([]string, error) {
	nodes, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label + "=" + value})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes on %s: %w", value, err)
	}
	on := map[string]bool{}
	for _, n := range nodes.Items {
		if n.Name != c.node {
			on[n.Name] = true
		}
	}
	pods, err := c.agentPods(ctx, agents, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods {
		if on[p.Spec.NodeName] && p.Status.PodIP != "" && podutils.IsPodReady(&p) && p.DeletionTimestamp == nil {
			out = append(out, p.Status.PodIP+":"+agentPort)
		}
	}
	slices.Sort(out)
	return out, nil
}

// agentPods lists the agents' pods, on one node or ("") every node.
func (c *cluster) agentPods(ctx context.Context, agents, node string) ([]corev1.Pod, error) {
	pods, err := c.daemonSetPods(ctx, agents, node)
	if err != nil {
		return nil, fmt.Errorf("hitless's agents: %w", err)
	}
	return pods, nil
}

// task asks the node's agent to carry t out and waits for its result;
// a result already written for t's ID is read, not asked again.
func (c *cluster) task(ctx context.Context, agents string, t agent.Task) (agent.TaskResult, error) {
	n, err := c.cs.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
	if err != nil {
		return agent.TaskResult{}, fmt.Errorf("reading node %s: %w", c.node, err)
	}
	if r, ok := agent.TaskResultOf(n); ok && r.ID == t.ID {
		return r, resultErr(c.node, r)
	}
	if err := c.waitReady(ctx, agents, nil); err != nil {
		return agent.TaskResult{}, fmt.Errorf("node %s needs hitless's agent to %s: %w", c.node, describe(t), err)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return agent.TaskResult{}, err
	}
	if err := c.patchNode(ctx, map[string]any{"annotations": map[string]string{agent.AnnotationTask: string(b)}}); err != nil {
		return agent.TaskResult{}, fmt.Errorf("asking node %s's agent to %s: %w", c.node, describe(t), err)
	}
	var res agent.TaskResult
	err = transient.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading node %s: %w", c.node, err)
		}
		r, ok := agent.TaskResultOf(n)
		res = r
		return ok && r.ID == t.ID, nil
	})
	if err != nil {
		return res, fmt.Errorf("waiting for node %s's agent to %s: %w", c.node, describe(t), err)
	}
	return res, resultErr(c.node, res)
}

func resultErr(node string, r agent.TaskResult) error {
	if r.Error != "" {
		return fmt.Errorf("the agent of node %s: %s", node, r.Error)
	}
	return nil
}

func describe(t agent.Task) string {
	var parts []string
	if len(t.RemoveCNIConfigs) > 0 {
		parts = append(parts, "remove "+strings.Join(t.RemoveCNIConfigs, ", ")+" from /etc/cni/net.d")
	}
	if len(t.RemoveLinks) > 0 {
		parts = append(parts, "remove device(s) "+strings.Join(t.RemoveLinks, ", "))
	}
	if len(t.Verify) > 0 {
		parts = append(parts, fmt.Sprintf("probe %d peer(s)", len(t.Verify)))
	}
	return strings.Join(parts, " and ")
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}
