package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/examples"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

func TestParseErrorsNameFileDocumentObjectField(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"not YAML", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n", []string{"bad.yaml: document 2", "not valid YAML"}},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"document 1", "field kind"}},
		{"no apiVersion", "kind: ConfigMap\nmetadata: {name: x}\n", []string{"(ConfigMap/x)", "field apiVersion"}},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: a}\n", []string{"(ConfigMap)", "field metadata.name"}},
		{"label not a string", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: 1}\n", []string{"(ConfigMap/x)", "field metadata.labels.a"}},
		{"namespace not a string", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: [a]}\n", []string{"field metadata.namespace"}},
		{"bad list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n", []string{"field items[0].metadata.name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", strings.NewReader(tt.in))
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("Parse error = %v, want a *manifest.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSkipsEmptyDocumentsAndExpandsLists(t *testing.T) {
	in := "# comment only\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a, namespace: ns}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b, namespace: ns}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n"
	objs, err := Parse("x.yaml", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, Ref(o.Unstructured))
	}
	want := "ConfigMap/ns/a Secret/ns/b Namespace/ns"
	if strings.Join(got, " ") != want {
		t.Errorf("objects = %v, want %s", got, want)
	}
	if objs[2].Document != 4 {
		t.Errorf("namespace document index = %d, want 4", objs[2].Document)
	}
}

// Real upstream CNI manifests parse completely.
func TestParseUpstreamManifests(t *testing.T) {
	tests := []struct {
		file     string
		minCount int
		kinds    []string
	}{
		{"cni/antrea/antrea-v2.6.3.yml", 30, []string{"CustomResourceDefinition", "DaemonSet", "Deployment", "APIService", "MutatingWebhookConfiguration"}},
		{"cni/kube-router/kubeadm-kuberouter-v2.1.0.yaml", 4, []string{"DaemonSet", "ConfigMap", "ClusterRole"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(upstream.Path(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = f.Close() }()
			objs, err := Parse(tt.file, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) < tt.minCount {
				t.Errorf("%d objects, want at least %d", len(objs), tt.minCount)
			}
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.GetKind()] = true
			}
			for _, k := range tt.kinds {
				if !kinds[k] {
					t.Errorf("no %s parsed", k)
				}
			}
		})
	}
}

func TestExamplesParse(t *testing.T) {
	for dir, min := range map[string]int{examples.PluginV1: 20, examples.PluginV2: 20, examples.PluginV3: 17, examples.Apps: 9} {
		t.Run(dir, func(t *testing.T) {
			objs, err := ReadDir(examples.FS(), dir)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, o := range objs {
				ref := o.GetAPIVersion() + " " + Ref(o.Unstructured)
				if seen[ref] {
					t.Errorf("duplicate object %s", ref)
				}
				seen[ref] = true
			}
			if len(objs) < min {
				t.Errorf("only %d objects in %s", len(objs), dir)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
	f.Add("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n")
	f.Add("---\n# c\n---\nkind: [\n")
	f.Add("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"labels\":{\"a\":1}}}")
	f.Fuzz(func(t *testing.T, in string) {
		objs, err := Parse("fuzz.yaml", strings.NewReader(in))
		if err != nil {
			var me *Error
			if !errors.As(err, &me) || me.File != "fuzz.yaml" || me.Document < 1 {
				t.Fatalf("error does not name file and document: %v", err)
			}
			return
		}
		for _, o := range objs {
			if o.GetKind() == "" || o.GetAPIVersion() == "" || (o.GetName() == "" && o.GetGenerateName() == "") {
				t.Fatalf("accepted an object without kind, apiVersion or name: %v", o.Object)
			}
		}
	})
}
