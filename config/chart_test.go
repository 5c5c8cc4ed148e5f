package config_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/config"
	"github.com/hitless-dev/hitless/internal/component/chart"
)

const chartPath = "../charts/hitless"

// namespacedKinds is what the chart's objects need of a cluster's
// discovery: which of their kinds are namespaced.
type namespacedKinds struct{}

func (namespacedKinds) Namespaced(gk schema.GroupKind) (bool, bool) {
	switch gk.Kind {
	case "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace":
		return false, true
	}
	return true, true
}

func (namespacedKinds) NamespaceExists(string) bool { return true }

func renderChart(t *testing.T, ns string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	c, err := chart.Load(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	r, err := chart.Render(context.Background(), c, chart.Options{Release: "hitless", Namespace: ns, Values: values,
		Caps: chart.Capabilities{KubeVersion: "v1.37.2"}}, namespacedKinds{})
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(r.Source.Objects))
	for _, o := range r.Source.Objects {
		out = append(out, o.Unstructured)
	}
	return out, nil
}

func renderKustomize(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := config.Objects("default", "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (o.GetName() == name || o.GetNamespace()+"/"+o.GetName() == name) {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// normalRules sorts a role's rules and their lists, so that two ways of
// writing the same permissions compare equal.
func normalRules(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, l := range [][]string{r.APIGroups, r.Resources, r.ResourceNames, r.Verbs} {
			slices.Sort(l)
		}
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// The Helm chart installs what the kustomize bases install: the same
// CRDs, the same least-privilege rules (generated from the controller's
// markers), the same hardened pod.
func TestChartMatchesTheKustomizeBases(t *testing.T) {
	chartObjs, err := renderChart(t, "hitless-system", nil)
	if err != nil {
		t.Fatal(err)
	}
	kustObjs := renderKustomize(t)

	want := []string{}
	for _, k := range kinds(kustObjs) {
		if k != "Namespace//hitless-system" { // Helm's --create-namespace
			want = append(want, k)
		}
	}
	if got := kinds(chartObjs); !slices.Equal(got, want) {
		t.Errorf("the chart renders %v\nthe kustomize bases %v", got, want)
	}
	for kind, names := range map[string][]string{
		"ClusterRole": {"hitless-controller", "hitless-agent"},
		"Role":        {"hitless-system/hitless-controller", "hitless-hooks/hitless-controller", "hitless-system/hitless-agent"},
	} {
		for _, name := range names {
			var c, k rbacv1.ClusterRole
			find(t, chartObjs, kind, name, &c)
			find(t, kustObjs, kind, name, &k)
			if got, want := normalRules(c.Rules), normalRules(k.Rules); !slices.Equal(got, want) {
				t.Errorf("%s %s rules of the chart:\n%s\nof config (generated from the markers and the agent's manifest):\n%s", kind, name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}
	// The agent: the same DaemonSet but its image (the chart's version).
	var ca, ka appsv1.DaemonSet
	find(t, chartObjs, "DaemonSet", "hitless-agent", &ca)
	find(t, kustObjs, "DaemonSet", "hitless-agent", &ka)
	if img := ca.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/hitless-dev/hitless:0.1.0" {
		t.Errorf("the chart's agent image %q, want the chart's appVersion", img)
	}
	ca.Spec.Template.Spec.Containers[0].Image = ka.Spec.Template.Spec.Containers[0].Image
	if a, b := mustJSON(t, ca.Spec), mustJSON(t, ka.Spec); a != b {
		t.Errorf("agent DaemonSet: chart %s\nkustomize %s", a, b)
	}
	var cd, kd appsv1.Deployment
	find(t, chartObjs, "Deployment", "hitless-controller", &cd)
	find(t, kustObjs, "Deployment", "hitless-controller", &kd)
	cc, kc := cd.Spec.Template.Spec.Containers[0], kd.Spec.Template.Spec.Containers[0]
	for name, pair := range map[string][2]any{
		"pod securityContext":       {cd.Spec.Template.Spec.SecurityContext, kd.Spec.Template.Spec.SecurityContext},
		"container securityContext": {cc.SecurityContext, kc.SecurityContext},
		"env":                       {cc.Env, kc.Env},
		"serviceAccountName":        {cd.Spec.Template.Spec.ServiceAccountName, kd.Spec.Template.Spec.ServiceAccountName},
		"replicas":                  {cd.Spec.Replicas, kd.Spec.Replicas},
	} {
		a, _ := json.Marshal(pair[0])
		b, _ := json.Marshal(pair[1])
		if string(a) != string(b) {
			t.Errorf("%s: chart %s, kustomize %s", name, a, b)
		}
	}
	if cc.Image != "ghcr.io/hitless-dev/hitless:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion", cc.Image)
	}
}

func TestChartValues(t *testing.T) {
	t.Run("digest pins the image", func(t *testing.T) {
		objs, err := renderChart(t, "hitless-system", map[string]any{"image": map[string]any{"repository": "registry.example/hitless", "digest": "sha256:" + strings.Repeat("ab", 32)}})
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		find(t, objs, "Deployment", "hitless-controller", &d)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/hitless@sha256:"+strings.Repeat("ab", 32) {
			t.Errorf("image %q", img)
		}
	})
	t.Run("agent off", func(t *testing.T) {
		objs, err := renderChart(t, "hitless-system", map[string]any{"agent": map[string]any{"enabled": false}})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.Contains(o.GetName(), "agent") {
				t.Errorf("%s %s rendered with the agent off", o.GetKind(), o.GetName())
			}
		}
	})
	t.Run("component deployer", func(t *testing.T) {
		objs, err := renderChart(t, "hitless-system", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.Contains(o.GetName(), "deployer") {
				t.Errorf("%s %s rendered without components.deployer", o.GetKind(), o.GetName())
			}
		}
		if objs, err = renderChart(t, "hitless-system", map[string]any{"components": map[string]any{"deployer": true}}); err != nil {
			t.Fatal(err)
		}
		base, err := config.Objects("components", "")
		if err != nil {
			t.Fatal(err)
		}
		var c, k rbacv1.ClusterRole
		find(t, objs, "ClusterRole", "hitless-controller-component-deployer", &c)
		find(t, base, "ClusterRole", "hitless-component-deployer", &k)
		if got, want := normalRules(c.Rules), normalRules(k.Rules); !slices.Equal(got, want) {
			t.Errorf("the chart's deployer rules %v, config/components' %v", got, want)
		}
		var cb, kb rbacv1.ClusterRoleBinding
		find(t, objs, "ClusterRoleBinding", "hitless-controller-component-deployer", &cb)
		find(t, base, "ClusterRoleBinding", "hitless-component-deployer", &kb)
		if a, b := mustJSON(t, cb.Subjects), mustJSON(t, kb.Subjects); a != b {
			t.Errorf("the deployer is bound to %s in the chart, %s in config/components", a, b)
		}
	})
	t.Run("metrics off", func(t *testing.T) {
		objs, err := renderChart(t, "hitless-system", map[string]any{"metrics": map[string]any{"enabled": false}})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() == "Service" {
				t.Errorf("a metrics Service with metrics off: %s", o.GetName())
			}
		}
		var d appsv1.Deployment
		find(t, objs, "Deployment", "hitless-controller", &d)
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--metrics-bind-address=0") {
			t.Errorf("args %v", d.Spec.Template.Spec.Containers[0].Args)
		}
	})
	for _, tc := range []struct {
		name   string
		ns     string
		values map[string]any
		want   string
	}{
		{"another namespace", "kube-system", nil, "install the hitless chart in namespace hitless-system"},
		{"zero replicas", "hitless-system", map[string]any{"replicaCount": 0}, "replicaCount"},
		{"a value the chart does not know", "hitless-system", map[string]any{"replicas": 3}, "replicas"},
		{"a bad digest", "hitless-system", map[string]any{"image": map[string]any{"repository": "r", "digest": "latest"}}, "digest"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			_, err := renderChart(t, tc.ns, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rendering: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}
