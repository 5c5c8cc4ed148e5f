package component

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

func loadObjs(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	src, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*unstructured.Unstructured, 0, len(src.Objects))
	for _, o := range src.Objects {
		out = append(out, o.DeepCopy())
	}
	Normalize(out)
	return out
}

func object(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

func set(t *testing.T, u *unstructured.Unstructured, v any, path ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, v, path...); err != nil {
		t.Fatal(err)
	}
}

func str(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
	b, _ := json.Marshal(v)
	return string(b)
}

// The sample plugin's upgrade with the user's edits of the old release:
// every edit carried, every vendor change taken, and a field both changed
// is a conflict resolved as --prefer says.
func TestPortSamplePlugin(t *testing.T) {
	cases := []struct {
		name        string
		prefer      Prefer
		wantErr     bool
		wantImage   string
		wantCarried int
	}{
		{"conflict stops", PreferNone, true, "", 0},
		{"vendor wins", PreferVendor, false, `"registry.example.com/sample-cni/contrail-controller:1.1.0"`, 5},
		{"user wins", PreferUser, false, `"mirror.site/contrail-controller:1.0.0"`, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v1, v2 := loadObjs(t, "../../examples/sample-plugin/v1"), loadObjs(t, "../../examples/sample-plugin/v2")
			user := loadObjs(t, "../../examples/sample-plugin/v1")
			set(t, object(t, user, "ConfigMap", "contrail-settings"), "1400", "data", "VROUTER_MTU")
			ds := object(t, user, "DaemonSet", "contrail-vrouter-nodes")
			set(t, ds, "network", "metadata", "labels", "site.example/team")
			set(t, ds, []any{map[string]any{"name": "site-registry"}, map[string]any{"name": "contrail-registry-credentials"}}, "spec", "template", "spec", "imagePullSecrets")
			ctl := object(t, user, "Deployment", "contrail-controller")
			cs, _, _ := unstructured.NestedSlice(ctl.Object, "spec", "template", "spec", "containers")
			c := cs[0].(map[string]any)
			c["image"] = "mirror.site/contrail-controller:1.0.0"
			c["resources"].(map[string]any)["limits"] = map[string]any{"memory": "1Gi"}
			set(t, ctl, cs, "spec", "template", "spec", "containers")
			sec := object(t, user, "Secret", "contrail-registry-credentials")
			set(t, sec, "c2VjcmV0", "data", ".dockerconfigjson")

			got, err := Port(v1, user, v2, tc.prefer)
			var ce *ConflictError
			if tc.wantErr {
				if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Path != "spec.template.spec.containers[name=controller].image" ||
					ce.Conflicts[0].User != `"mirror.site/contrail-controller:1.0.0"` || ce.Conflicts[0].Vendor != `"registry.example.com/sample-cni/contrail-controller:1.1.0"` {
					t.Fatalf("want one conflict on the controller image with both values, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Carried) != tc.wantCarried {
				t.Errorf("carried %d: %v", len(got.Carried), got.Carried)
			}
			cm := object(t, got.Objects, "ConfigMap", "contrail-settings")
			if str(cm, "data", "VROUTER_MTU") != `"1400"` || str(cm, "data", "FLOW_EXPORT_RATE") != `"0"` {
				t.Errorf("settings %s: want the user's MTU and the vendor's new key", str(cm, "data"))
			}
			gds := object(t, got.Objects, "DaemonSet", "contrail-vrouter-nodes")
			if str(gds, "metadata", "labels", "site.example/team") != `"network"` || str(gds, "metadata", "labels", "app.kubernetes.io/version") != `"1.1.0"` {
				t.Errorf("DaemonSet labels %s", str(gds, "metadata", "labels"))
			}
			if s := str(gds, "spec", "template", "spec", "imagePullSecrets"); s != `[{"name":"site-registry"},{"name":"contrail-registry-credentials"}]` {
				t.Errorf("image pull secrets %s: want both, in the user's order", s)
			}
			gctl := object(t, got.Objects, "Deployment", "contrail-controller")
			if s := str(gctl, "spec", "template", "spec", "containers"); !strings.Contains(s, `"image":`+tc.wantImage) || !strings.Contains(s, `"limits":{"memory":"1Gi"}`) {
				t.Errorf("controller container %s", s)
			}
			if s := str(object(t, got.Objects, "GlobalVrouterConfig", "default-global-vrouter-config"), "spec", "fastConvergence"); s == "null" {
				t.Errorf("the vendor's new field is missing")
			}
			i := slices.IndexFunc(got.Carried, func(c Change) bool { return strings.HasPrefix(c.Object, "Secret/") })
			if i < 0 || got.Carried[i].Value != "(redacted)" {
				t.Errorf("a Secret's value must be carried redacted: %v", got.Carried)
			}
		})
	}
}

// A rollback ports the other way: the vendor's new field goes, with no
// empty map left behind, and the user's edits stay.
func TestPortBackward(t *testing.T) {
	v1, v2 := loadObjs(t, "../../examples/sample-plugin/v1"), loadObjs(t, "../../examples/sample-plugin/v2")
	user := loadObjs(t, "../../examples/sample-plugin/v2")
	set(t, object(t, user, "ConfigMap", "contrail-settings"), "1400", "data", "VROUTER_MTU")
	got, err := Port(v2, user, v1, PreferNone)
	if err != nil {
		t.Fatal(err)
	}
	if s := str(object(t, got.Objects, "GlobalVrouterConfig", "default-global-vrouter-config"), "spec", "fastConvergence"); s != "null" {
		t.Errorf("fastConvergence %s after going back to v1, want absent", s)
	}
	cm := object(t, got.Objects, "ConfigMap", "contrail-settings")
	if str(cm, "data", "VROUTER_MTU") != `"1400"` || str(cm, "data", "FLOW_EXPORT_RATE") != "null" {
		t.Errorf("settings %s", str(cm, "data"))
	}
}

// Whole objects: one the user added is kept, one the user deleted is left
// out when the vendor did not change it and a conflict when it did.
func TestPortObjects(t *testing.T) {
	cm := func(name, v string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name, "namespace": "n"}, "data": map[string]any{"k": v}}}
		return u
	}
	orig := []*unstructured.Unstructured{cm("a", "1"), cm("b", "1")}
	user := []*unstructured.Unstructured{cm("extra", "u")}
	vendor := []*unstructured.Unstructured{cm("a", "1"), cm("b", "2")}
	_, err := Port(orig, user, vendor, PreferNone)
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Object != "ConfigMap/n/b" {
		t.Fatalf("want a conflict on the deleted-but-changed b, got %v", err)
	}
	names := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetName())
		}
		slices.Sort(out)
		return out
	}
	got, err := Port(orig, user, vendor, PreferUser)
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got.Objects); !slices.Equal(n, []string{"extra"}) {
		t.Errorf("prefer user: objects %v, want only the user's extra (a and b deleted by the user)", n)
	}
	if got, err = Port(orig, user, vendor, PreferVendor); err != nil {
		t.Fatal(err)
	}
	if n := names(got.Objects); !slices.Equal(n, []string{"b", "extra"}) {
		t.Errorf("prefer vendor: objects %v, want b (changed by the vendor) and extra", n)
	}
}

// UserVersion reads the user's fields from managedFields: kubectl's
// managers count, the controllers' and hitless's own do not, and a keyed
// list element lands on its key in the live order.
func TestUserVersion(t *testing.T) {
	applied := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": map[string]any{"name": "d", "namespace": "n"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"imagePullSecrets": []any{map[string]any{"name": "vendor"}},
			"containers":       []any{map[string]any{"name": "c", "image": "i:1"}},
		}}},
	}}
	live := applied.DeepCopy()
	set(t, live, []any{map[string]any{"name": "user"}, map[string]any{"name": "vendor"}}, "spec", "template", "spec", "imagePullSecrets")
	set(t, live, []any{map[string]any{"name": "c", "image": "i:1", "terminationMessagePath": "/dev/termination-log", "resources": map[string]any{"limits": map[string]any{"cpu": "1"}}}}, "spec", "template", "spec", "containers")
	set(t, live, "x", "metadata", "labels", "team")
	set(t, live, "7", "metadata", "annotations", "deprecated.daemonset.template.generation")
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		{Manager: "hitless", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:imagePullSecrets":{"k:{\"name\":\"vendor\"}":{".":{},"f:name":{}}}}}}}`)}},
		{Manager: "kubectl-patch", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:imagePullSecrets":{"k:{\"name\":\"user\"}":{".":{},"f:name":{}}},"f:containers":{"k:{\"name\":\"c\"}":{"f:resources":{"f:limits":{"f:cpu":{}}}}}}}}}`)}},
		{Manager: "kubectl-label", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:team":{}}}}`)}},
		{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:deprecated.daemonset.template.generation":{}}}}`)}},
	})
	got, err := UserVersion(applied, live, "hitless")
	if err != nil {
		t.Fatal(err)
	}
	if s := str(got, "spec", "template", "spec", "imagePullSecrets"); s != `[{"name":"user"},{"name":"vendor"}]` {
		t.Errorf("imagePullSecrets %s", s)
	}
	if s := str(got, "spec", "template", "spec", "containers"); s != `[{"image":"i:1","name":"c","resources":{"limits":{"cpu":"1"}}}]` {
		t.Errorf("containers %s: want the user's limit and no defaulted field", s)
	}
	if str(got, "metadata", "labels", "team") != `"x"` || str(got, "metadata", "annotations") != "null" {
		t.Errorf("metadata %s: want the user's label and not the controller's annotation", str(got, "metadata"))
	}
}

// With no customization, porting a real release to the next gives exactly
// the next release, object by object: nothing of the old one left over
// (Antrea 2.7.0 drops two webhooks), nothing lost.
func TestPortRealReleasesUncustomized(t *testing.T) {
	for _, tc := range []struct{ from, to string }{
		{"cni/antrea/antrea-v2.6.3.yml", "cni/antrea/antrea-v2.7.0.yml"},
		{"cni/antrea/antrea-v2.7.0.yml", "cni/antrea/antrea-v2.6.3.yml"},
		{"cni/kube-router/kubeadm-kuberouter-v1.6.0.yaml", "cni/kube-router/kubeadm-kuberouter-v2.1.0.yaml"},
		{"cni/kube-router/kubeadm-kuberouter-v2.1.0.yaml", "cni/kube-router/kubeadm-kuberouter-v1.6.0.yaml"},
	} {
		t.Run(tc.from+" to "+tc.to, func(t *testing.T) {
			from := loadObjs(t, upstream.Path(t, strings.Split(tc.from, "/")...))
			to := loadObjs(t, upstream.Path(t, strings.Split(tc.to, "/")...))
			got, err := Port(from, loadObjs(t, upstream.Path(t, strings.Split(tc.from, "/")...)), to, PreferNone)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Carried) > 0 || len(got.Objects) != len(to) {
				t.Fatalf("%d objects, carried %v; want the %d of the release and nothing carried", len(got.Objects), got.Carried, len(to))
			}
			for i, o := range got.Objects {
				if a, b := jsonString(o.Object), jsonString(to[i].Object); a != b {
					t.Errorf("%s differs from the release:\n got %s\nwant %s", ref(o), a, b)
				}
			}
		})
	}
}
