package pairs_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/engine/roll"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// The releases run on a cluster of their own whose deleted pods end at
// once: these tests are about the objects each step leaves, not about
// timing, and the releases' grace periods (30 s for Antrea and
// kube-router) would otherwise make up most of their time.
var env = clustertest.New(clustertest.Options{Workers: 3, QuickTermination: true})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

const (
	pluginV1 = "../../../../examples/sample-plugin/v1"
	pluginV2 = "../../../../examples/sample-plugin/v2"
)

func hitless(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return lifecycletest.Hitless(t, env, args...)
}

func mustHitless(t *testing.T, args ...string) *lifecycle.Result {
	t.Helper()
	return lifecycletest.MustHitless(t, env, args...)
}

func snapshot(t *testing.T, component string) map[string]string {
	t.Helper()
	return lifecycletest.Snapshot(t, env, component)
}

func get(t *testing.T, apiVersion, resource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	return lifecycletest.Get(t, env, apiVersion, resource, ns, name)
}

func patch(t *testing.T, apiVersion, resource, ns, name, manager string, pt types.PatchType, body string) {
	t.Helper()
	lifecycletest.Patch(t, env, apiVersion, resource, ns, name, manager, pt, body)
}

// releasePair is two real releases of one plugin and where a user
// customizes it: its data-plane DaemonSet (container) and a ConfigMap.
type releasePair struct {
	name         string
	older, newer string
	args         []string // source flags both releases take (namespace, values)
	// batch is the data-plane batch: every node at once, but where a
	// PDB-guarded workload (the sample plugin's config store) needs
	// uncordoned nodes to start its evicted pods again.
	batch string
	// unavailable is how many APIServices the install reports that
	// nothing serves on KWOK nodes (Antrea's); warning is one each change
	// must give.
	unavailable int
	warning     string
	ns          string
	daemonSet   string
	container   string
	configMap   string
}

func releasePairs(t *testing.T) []releasePair {
	values := lifecycletest.WriteFile(t, "values.yaml", "operator:\n  replicas: 1\nipam:\n  mode: kubernetes\n")
	return []releasePair{
		{name: "sample", older: pluginV1, newer: pluginV2, batch: "50%", ns: "contrail", daemonSet: "contrail-vrouter-nodes", container: "vrouter-agent", configMap: "contrail-settings"},
		{name: "kube-router", older: upstream.Path(t, "cni", "kube-router", "kubeadm-kuberouter-v1.6.0.yaml"), newer: upstream.Path(t, "cni", "kube-router", "kubeadm-kuberouter-v2.1.0.yaml"),
			batch: "100%", ns: "kube-system", daemonSet: "kube-router", container: "kube-router", configMap: "kube-router-cfg"},
		{name: "antrea", older: upstream.Path(t, "cni", "antrea", "antrea-v2.6.3.yml"), newer: upstream.Path(t, "cni", "antrea", "antrea-v2.7.0.yml"),
			batch: "100%", unavailable: 3, warning: "Deployment kube-system/antrea-controller uses Recreate: all 1 pod(s) stop before the new ones start",
			ns: "kube-system", daemonSet: "antrea-agent", container: "antrea-agent", configMap: "antrea-config"},
		{name: "cilium", older: upstream.Path(t, "helm", "cilium", "cilium-1.18.12.tgz"), newer: upstream.Path(t, "helm", "cilium", "cilium-1.19.6.tgz"),
			args: []string{"-n", "kube-system", "--values", values}, batch: "100%", ns: "kube-system", daemonSet: "cilium", container: "cilium-agent", configMap: "cilium-config"},
	}
}

// Every pair of real releases (the sample plugin, kube-router, Antrea,
// Cilium's chart) goes both ways: upgrade then rollback, and a downgrade
// (the newer installed, then the older) then rollback. Each way runs
// twice on one install: as the vendor ships it, and with the live
// customizations users make (an env var, a memory limit, a label, an
// image pull secret, a ConfigMap value). Every step exits 0 with valid
// objects, the customizations survive the change, and after each rollback
// every object equals what it was before the change, whole (labels and
// annotations included; only what the server manages is left out), with
// nothing of the other release left behind.
func TestReleasePairsBothWays(t *testing.T) {
	for _, p := range releasePairs(t) {
		t.Run(p.name, func(t *testing.T) {
			for _, way := range []struct {
				name     string
				from, to string
			}{
				{"upgrade", p.older, p.newer},
				{"downgrade", p.newer, p.older},
			} {
				t.Run(way.name, func(t *testing.T) {
					name := p.name + "-" + way.name[:2]
					step := stepper(t)
					in := step("install", p.flags("install", "-f", way.from, "--name", name))
					t.Cleanup(func() { hitless(t, "uninstall", "--name", name, "--force-namespaces") })
					if len(in.Unavailable) != p.unavailable {
						t.Errorf("install: unavailable APIs %v, want %d reported (not waited on)", in.Unavailable, p.unavailable)
					}
					inventory := len(in.Applied)
					// An application beside the plugin, and a guard on
					// each change: the data-plane pods go only on
					// cordoned nodes the application has left, no more
					// nodes at once than the batch.
					apps := env.Namespace(t)
					env.Deployment(t, apps, "web", 2, clustertest.Workload{})
					pool := env.NodeNames(t)
					batch := (&roll.Spec{Batch: p.batch}).BatchSize(len(pool))
					var guards []*clustertest.Guard
					guarded := func() {
						guards = append(guards, clustertest.StartDataPlaneGuard(t, env.Client(t), apps, pool, batch, p.ns, p.daemonSet))
					}
					change := func(what string) {
						t.Helper()
						guarded()
						res := step(what, p.flags("upgrade", "-f", way.to, "--name", name))
						if p.warning != "" && !slices.Contains(res.Warnings, p.warning) {
							t.Errorf("%s: warnings %v, want %q", what, res.Warnings, p.warning)
						}
						ref := p.ns + "/" + p.daemonSet
						if !slices.Contains(res.Plan.DataPlane, ref) || !slices.ContainsFunc(res.Rolls, func(r lifecycle.RollSummary) bool { return r.DaemonSet == ref }) {
							t.Errorf("%s: data plane %v rolled by %v; want %s found and rolled", what, res.Plan.DataPlane, res.Rolls, ref)
						}
						snapshot(t, name) // every object of the other release is there
					}
					rollback := func(what string, before map[string]string) {
						t.Helper()
						guarded()
						step("rollback", []string{"rollback", "--name", name, "--batch", p.batch})
						lifecycletest.SameObjects(t, env, "after the "+what+" and its rollback", before, snapshot(t, name), name)
					}

					before := snapshot(t, name)
					change("plain " + way.name)
					rollback("plain "+way.name, before)

					// The live edits start the DaemonSet's own rolling
					// update, on nodes nobody drained: that is the
					// user's doing, not hitless's, so the guards stop
					// first and the next one starts once it is done.
					disarm(t, guards)
					p.customize(t)
					lifecycletest.WaitSettled(t, env, p.ns, p.daemonSet)
					before = snapshot(t, name)
					change("customized " + way.name)
					p.checkCustomized(t, "after the "+way.name)
					rollback("customized "+way.name, before)
					p.checkCustomized(t, "after the rollback")

					// Uninstalling deletes the data plane everywhere, as
					// it must: the guards stop here.
					disarm(t, guards)
					gone := step("uninstall", []string{"uninstall", "--name", name, "--force-namespaces"})
					if len(gone.Remaining) > 0 || len(gone.Deleted) < inventory {
						t.Errorf("uninstall: %d deleted of %d, remaining %v", len(gone.Deleted), inventory, gone.Remaining)
					}
					if left := lifecycletest.Labelled(t, env, "hitless.dev/name="+name); len(left) > 0 {
						t.Errorf("uninstall left %v", left)
					}
					get(t, "v1", "namespaces", "", "kube-system")
				})
			}
		})
	}
}

// disarm stops the guards, reporting what they saw.
func disarm(t *testing.T, guards []*clustertest.Guard) {
	t.Helper()
	for _, g := range guards {
		if v := g.Take(true); len(v) > 0 {
			t.Errorf("guard: %v", v)
		}
	}
}

// flags are a command's arguments with the pair's source flags and batch.
func (p releasePair) flags(args ...string) []string {
	return append(append(args, "--batch", p.batch), p.args...)
}

// stepper runs hitless commands that must exit 0, logging how long each
// took.
func stepper(t *testing.T) func(what string, args []string) *lifecycle.Result {
	return func(what string, args []string) *lifecycle.Result {
		t.Helper()
		start := time.Now()
		res := mustHitless(t, args...)
		var steps []string
		for _, s := range res.Steps {
			if s.Finished != nil {
				steps = append(steps, fmt.Sprintf("%s %.1f", s.Name, s.Finished.Sub(s.Started).Seconds()))
			}
		}
		t.Logf("%s: %.1fs (%s), ended %s", what, time.Since(start).Seconds(), strings.Join(steps, ", "), time.Now().Format("15:04:05.000"))
		return res
	}
}

const (
	userEnv    = "SITE_TRACE"
	userSecret = "site-registry"
	userLabel  = "site.example/team"
	userKey    = "site-edit"
)

// customize makes the live edits users make, each through its own field
// manager as kubectl does. The DaemonSet's own rolling update they start
// is not waited for: the upgrade takes the data plane over wherever that
// roll is.
func (p releasePair) customize(t *testing.T) {
	t.Helper()
	cs := env.Client(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: userSecret, Namespace: p.ns}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{"reg.site.example":{"auth":"c2l0ZTpzM2NyZXQ="}}}`)}}
	if _, err := cs.CoreV1().Secrets(p.ns).Create(context.Background(), secret, metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Secrets(p.ns).Delete(context.Background(), userSecret, metav1.DeleteOptions{}) })
	patch(t, "v1", "configmaps", p.ns, p.configMap, "kubectl-patch", types.MergePatchType, `{"data":{"`+userKey+`":"kept"}}`)
	patch(t, "apps/v1", "daemonsets", p.ns, p.daemonSet, "kubectl-label", types.MergePatchType, `{"metadata":{"labels":{"`+userLabel+`":"network"}}}`)
	patch(t, "apps/v1", "daemonsets", p.ns, p.daemonSet, "kubectl-set", types.StrategicMergePatchType,
		fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"env":[{"name":%q,"value":"1"}],"resources":{"limits":{"memory":"1Gi"}}}]}}}}`, p.container, userEnv))
	patch(t, "apps/v1", "daemonsets", p.ns, p.daemonSet, "kubectl-patch", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"`+userSecret+`"}]}}}}`)
}

// checkCustomized reports each live edit that is gone.
func (p releasePair) checkCustomized(t *testing.T, when string) {
	t.Helper()
	cm := get(t, "v1", "configmaps", p.ns, p.configMap)
	if v, _, _ := unstructured.NestedString(cm.Object, "data", userKey); v != "kept" {
		t.Errorf("%s: ConfigMap %s data.%s = %q, want the user's value", when, p.configMap, userKey, v)
	}
	ds := get(t, "apps/v1", "daemonsets", p.ns, p.daemonSet)
	if ds.GetLabels()[userLabel] != "network" {
		t.Errorf("%s: DaemonSet %s lost the user's label: %v", when, p.daemonSet, ds.GetLabels())
	}
	pod, _, _ := unstructured.NestedMap(ds.Object, "spec", "template", "spec")
	if secrets := lifecycletest.JSON(pod["imagePullSecrets"]); !strings.Contains(secrets, userSecret) {
		t.Errorf("%s: DaemonSet %s image pull secrets %s, want the user's", when, p.daemonSet, secrets)
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	for _, c := range containers {
		c := c.(map[string]any)
		if c["name"] != p.container {
			continue
		}
		if s := lifecycletest.JSON(c["env"]); !strings.Contains(s, `"name":"`+userEnv+`","value":"1"`) {
			t.Errorf("%s: container %s env %s, want the user's %s", when, p.container, s, userEnv)
		}
		if s := lifecycletest.JSON(c["resources"]); !strings.Contains(s, `"limits":{"memory":"1Gi"}`) {
			t.Errorf("%s: container %s resources %s, want the user's memory limit", when, p.container, s)
		}
		return
	}
	t.Errorf("%s: DaemonSet %s has no container %s", when, p.daemonSet, p.container)
}
