package chart

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/component/manifest"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// scope says every kind but a few cluster-scoped ones is namespaced.
type scope struct{}

func (scope) Namespaced(gk schema.GroupKind) (bool, bool) {
	switch gk.Kind {
	case "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "APIService",
		"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "PriorityClass", "IngressClass":
		return false, true
	}
	return true, true
}

func (scope) NamespaceExists(string) bool { return true }

var caps = Capabilities{KubeVersion: "v1.37.2", APIVersions: []string{"v1", "apps/v1", "batch/v1", "policy/v1", "rbac.authorization.k8s.io/v1"}}

func upstreamPath(tb testing.TB, version string) string {
	return upstream.Path(tb, "helm", "cilium", "cilium-"+version+".tgz")
}

func cilium(t *testing.T, version string) *Chart {
	t.Helper()
	c, err := Load(upstreamPath(t, version))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenderCilium(t *testing.T) {
	c := cilium(t, "1.18.12")
	if c.Name() != "cilium" || c.Version() != "1.18.12" {
		t.Fatalf("chart %s %s", c.Name(), c.Version())
	}
	vals, err := Values(nil, []string{"operator.replicas=1", "ipam.mode=kubernetes"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(context.Background(), c, Options{Release: "cilium", Namespace: "kube-system", Values: vals, Caps: caps}, scope{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range r.Source.Objects {
		kinds[o.GetKind()]++
		if ns, _ := (scope{}).Namespaced(o.GroupVersionKind().GroupKind()); ns && o.GetNamespace() == "" {
			t.Errorf("%s/%s has no namespace", o.GetKind(), o.GetName())
		}
		if !strings.Contains(o.File, "cilium/templates/") {
			t.Errorf("%s/%s: file %q does not name its template", o.GetKind(), o.GetName(), o.File)
		}
	}
	if kinds["DaemonSet"] < 1 || kinds["Deployment"] < 1 || kinds["ConfigMap"] < 1 {
		t.Errorf("rendered kinds %v: want the agent DaemonSet, the operator Deployment and the config", kinds)
	}
}

func TestRenderRefusesBadInput(t *testing.T) {
	c := cilium(t, "1.18.12")
	tests := []struct {
		name string
		sets []string
		want string
	}{
		{"a value the schema refuses", []string{"operator.replicas=many"}, "at '/operator/replicas': got string, want integer"},
		{"a hook hitless does not run", []string{"hubble.tls.auto.method=cronJob"}, "Job/hubble-generate-certs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, err := Values(nil, tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Render(context.Background(), c, Options{Release: "cilium", Namespace: "kube-system", Values: vals, Caps: caps}, scope{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
	t.Run("a template that fails", func(t *testing.T) {
		dir := t.TempDir()
		for name, body := range map[string]string{
			"Chart.yaml":        "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
			"values.yaml":       "x: 1\n",
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: {{ required \"x.y is required\" .Values.x.y | quote }}}\n",
		} {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Render(context.Background(), c, Options{Release: "b", Namespace: "default", Caps: caps}, scope{})
		var me *manifest.Error
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "templates/cm.yaml") {
			t.Fatalf("err = %v, want a manifest error naming templates/cm.yaml", err)
		}
	})
	t.Run("not a chart", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nothing.tgz"))
		var me *manifest.Error
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "nothing.tgz") {
			t.Fatalf("err = %v, want a manifest error naming the file", err)
		}
	})
}

// split never loses a document's text and names every document's
// template, whatever Helm's renderer wrote.
func FuzzSplit(f *testing.F) {
	f.Add("---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\n---\n# Source: c/templates/a.yaml\nkind: Secret\n")
	f.Add("kind: ConfigMap\n---\n---\n# Source: x\n")
	f.Fuzz(func(t *testing.T, m string) {
		for _, d := range split(m) {
			if d.template == "" || strings.TrimSpace(d.body) == "" && d.template == "(rendered)" {
				t.Fatalf("document %+v of %q", d, m)
			}
			for _, line := range strings.Split(d.body, "\n") {
				if line != "" && !strings.Contains(m, line) {
					t.Fatalf("line %q is not in the manifest %q", line, m)
				}
			}
		}
	})
}
