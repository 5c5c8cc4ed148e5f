package catalog_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/catalog"
	"github.com/hitless-dev/hitless/internal/check/profile"
	"github.com/hitless-dev/hitless/internal/check/snapshot"
	"github.com/hitless-dev/hitless/internal/component/apply"
	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

func condition(t, status, reason string) map[string]any {
	return map[string]any{"type": t, "status": status, "reason": reason, "message": reason + " message",
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
}

// createWithStatus creates a cluster-scoped object, then sets its status
// through the status subresource, as the operators would.
func createWithStatus(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, kind, name string, spec, status map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.Group + "/" + gvr.Version, "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	ctx := context.Background()
	out, err := dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	setStatus(t, dyn, gvr, out, status)
	t.Cleanup(func() { _ = dyn.Resource(gvr).Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

func setStatus(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, u *unstructured.Unstructured, status map[string]any) {
	t.Helper()
	u.Object["status"] = status
	_, err := dyn.Resource(gvr).UpdateStatus(context.Background(), u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		// No status subresource (Network.config.openshift.io): the status
		// is part of the object.
		_, err = dyn.Resource(gvr).Update(context.Background(), u, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("setting status of %s: %v", u.GetName(), err)
	}
}

// The OpenShift checks run against the real OpenShift CRDs installed into
// the local cluster, with statuses set by the test.
func TestOpenShift(t *testing.T) {
	dir := upstream.Path(t, "openshift")
	objs, err := manifest.ReadDir(os.DirFS(dir), ".")
	if err != nil {
		t.Fatal(err)
	}
	applier, err := apply.New(env.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	crds := manifest.Unstructured(objs)
	if _, err := applier.Apply(context.Background(), crds, apply.Options{Set: "openshift-crds", Wait: time.Minute}); err != nil {
		t.Fatalf("installing the OpenShift CRDs: %v", err)
	}
	dyn, err := dynamic.NewForConfig(env.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		for _, c := range crds {
			_ = dyn.Resource(gvr).Delete(context.Background(), c.GetName(), metav1.DeleteOptions{})
		}
	})

	healthy := []any{condition("Available", "True", "AsExpected"), condition("Progressing", "False", "AsExpected"), condition("Degraded", "False", "AsExpected")}
	createWithStatus(t, dyn, snapshot.ClusterOperators, "ClusterOperator", "dns", map[string]any{}, map[string]any{"conditions": healthy})
	createWithStatus(t, dyn, snapshot.ClusterOperators, "ClusterOperator", "network", map[string]any{}, map[string]any{"conditions": []any{
		condition("Available", "True", "AsExpected"), condition("Progressing", "True", "Deploying"), condition("Degraded", "True", "RolloutHung"),
	}})
	mcpStatus := func(updated string, count, done int64) map[string]any {
		return map[string]any{"conditions": []any{condition("Updated", updated, ""), condition("Degraded", "False", "")},
			"machineCount": count, "updatedMachineCount": done, "readyMachineCount": done, "unavailableMachineCount": 0, "degradedMachineCount": 0}
	}
	createWithStatus(t, dyn, snapshot.MachineConfigPools, "MachineConfigPool", "master", map[string]any{}, mcpStatus("True", 3, 3))
	createWithStatus(t, dyn, snapshot.MachineConfigPools, "MachineConfigPool", "worker", map[string]any{}, mcpStatus("False", 3, 1))
	createWithStatus(t, dyn, snapshot.NetworkConfigs, "Network", "cluster", map[string]any{"networkType": "OVNKubernetes"},
		map[string]any{"networkType": "OpenShiftSDN"})

	rep := run(t, catalog.Options{Profile: "openshift-ovn-migration", AgentTimeout: -1})
	r := expect(t, rep, "openshift.clusteroperators", check.Fail, check.Hard, "ClusterOperator/network")
	if slices.Contains(r.Objects, "ClusterOperator/dns") || !strings.Contains(r.Message, "Progressing=True Deploying") || !strings.Contains(r.Message, "Degraded=True RolloutHung") {
		t.Fatalf("ClusterOperators: %q %v", r.Message, r.Objects)
	}
	r = expect(t, rep, "openshift.machineconfigpools", check.Fail, check.Hard, "MachineConfigPool/worker")
	if slices.Contains(r.Objects, "MachineConfigPool/master") || !strings.Contains(r.Message, "1 of 3 machines updated") {
		t.Fatalf("MachineConfigPools: %q %v", r.Message, r.Objects)
	}
	post := run(t, catalog.Options{Kind: profile.Postflight, Profile: "openshift-ovn-migration", AgentTimeout: -1})
	r = expect(t, post, "openshift.network-type", check.Fail, check.Hard, "Network.config.openshift.io/cluster")
	if !strings.Contains(r.Message, `"OpenShiftSDN", expected "OVNKubernetes"`) {
		t.Fatalf("network type: %q", r.Message)
	}

	// The operators settle and the migration finishes: everything passes.
	for _, fix := range []struct {
		gvr    schema.GroupVersionResource
		name   string
		status map[string]any
	}{
		{snapshot.ClusterOperators, "network", map[string]any{"conditions": healthy}},
		{snapshot.MachineConfigPools, "worker", mcpStatus("True", 3, 3)},
		{snapshot.NetworkConfigs, "cluster", map[string]any{"networkType": "OVNKubernetes"}},
	} {
		u, err := dyn.Resource(fix.gvr).Get(context.Background(), fix.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		setStatus(t, dyn, fix.gvr, u, fix.status)
	}
	rep = run(t, catalog.Options{Profile: "openshift-ovn-migration", AgentTimeout: -1})
	expect(t, rep, "openshift.clusteroperators", check.Pass, check.Hard, "")
	expect(t, rep, "openshift.machineconfigpools", check.Pass, check.Hard, "")
	post = run(t, catalog.Options{Kind: profile.Postflight, Profile: "openshift-ovn-migration", AgentTimeout: -1})
	expect(t, post, "openshift.network-type", check.Pass, check.Hard, "")
}
