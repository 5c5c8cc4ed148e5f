package component

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

// scope is a cluster's namespaces as a table; its kinds are builtins.
type scope struct {
	namespaces map[string]bool
}

var builtins = map[string]bool{ // Kind -> namespaced
	"Namespace": false, "ServiceAccount": true, "ConfigMap": true, "Secret": true, "Service": true, "Pod": true,
	"Deployment": true, "DaemonSet": true, "StatefulSet": true, "Job": true, "CronJob": true,
	"ClusterRole": false, "ClusterRoleBinding": false, "Role": true, "RoleBinding": true,
	"CustomResourceDefinition": false, "APIService": false,
	"MutatingWebhookConfiguration": false, "ValidatingWebhookConfiguration": false, "PodDisruptionBudget": true,
}

func (s scope) Namespaced(gk schema.GroupKind) (bool, bool) {
	n, ok := builtins[gk.Kind]
	return n, ok
}

func (s scope) NamespaceExists(name string) bool { return s.namespaces[name] }

var cluster = scope{namespaces: map[string]bool{"default": true, "kube-system": true}}

// The real releases of kube-router and Antrea load and validate: Antrea's
// images are all at its release, kube-router's are untagged.
func TestRealManifests(t *testing.T) {
	for _, f := range []string{"cni/kube-router/kubeadm-kuberouter-v1.6.0.yaml", "cni/kube-router/kubeadm-kuberouter-v2.1.0.yaml",
		"cni/antrea/antrea-v2.6.3.yml", "cni/antrea/antrea-v2.7.0.yml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := Load(upstream.Path(t, f))
			if err != nil {
				t.Fatal(err)
			}
			if src.Kind != KindFile || len(src.Objects) < 5 {
				t.Fatalf("%s: %d objects", src.Kind, len(src.Objects))
			}
			if err := Validate(src, cluster, Checks{}); err != nil {
				t.Fatal(err)
			}
			for _, w := range src.Warnings {
				if !strings.Contains(w.Message, "is cluster-scoped: namespace") {
					t.Fatalf("unexpected warning %s", w)
				}
			}
			tags := map[string]bool{}
			for _, img := range Images(src) {
				tags[img.Tag] = true
			}
			if strings.Contains(f, "antrea") && (len(tags) != 1 || tags[""]) {
				t.Fatalf("antrea image tags %v, want one release", tags)
			}
			if strings.Contains(f, "kube-router") && !tags[""] {
				t.Fatalf("kube-router image tags %v, want untagged", tags)
			}
		})
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: ctl, namespace: %s}
spec:
  selector: {matchLabels: {app: ctl}}
  template:
    metadata: {labels: {app: ctl}}
    spec:
      containers:
      - {name: ctl, image: "registry.example.com/ctl:%s"}
`

func TestValidateProblems(t *testing.T) {
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: net}\n"
	tests := []struct {
		name   string
		docs   []string
		checks Checks
		want   []string // each must appear in the error; none: valid
	}{
		{"valid", []string{ns, strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1)}, Checks{}, nil},
		{"duplicate object", []string{ns, ns}, Checks{}, []string{"document 2 (Namespace/net): field metadata.name: duplicate object: already defined in", "document 1"}},
		{"unknown namespace", []string{strings.Replace(strings.Replace(deploy, "%s", "nowhere", 1), "%s", "1.0", 1)},
			Checks{}, []string{"(Deployment/nowhere/ctl): field metadata.namespace: namespace \"nowhere\" exists neither in the cluster nor in the source"}},
		{"namespaced without namespace", []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"},
			Checks{}, []string{"(ConfigMap/settings): field metadata.namespace: ConfigMap is namespaced and has no namespace"}},
		{"cluster-scoped with namespace, twice", []string{"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: default}\n",
			"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"},
			Checks{}, []string{"document 2 (ClusterRole/r): field metadata.name: duplicate object"}},
		{"unknown kind", []string{"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"},
			Checks{}, []string{"field kind: kind Widget.example.com is not served by the cluster"}},
		{"kind from a CRD in the source", []string{
			"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Cluster, names: {kind: Widget, plural: widgets}}\n",
			"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"}, Checks{}, nil},
		{"mixed versions", []string{ns, strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1),
			strings.Replace(strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.1", 1), "name: ctl,", "name: agent,", 1),
			strings.Replace(strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1), "name: ctl,", "name: cfg,", 1)},
			Checks{}, []string{"(Deployment/net/agent): field spec.template.spec.containers[0].image: image registry.example.com/ctl is at 1.1, and at 1.0 in Deployment/net/ctl (spec.template.spec.containers[0].image): one repository, two versions"}},
		{"mixed versions allowed", []string{ns, strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1),
			strings.Replace(strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.1", 1), "name: ctl,", "name: agent,", 1)},
			Checks{MixedVersions: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := write(t, t.TempDir(), "c.yaml", strings.Join(tt.docs, "---\n"))
			src, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(src, cluster, tt.checks)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want an InvalidError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(err.Error(), f) {
				t.Fatalf("error does not name the file %s:\n%v", f, err)
			}
		})
	}
}

func TestLoadDirectoryAndKustomization(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "00-ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: net}\n")
	write(t, dir, "10-ctl.yaml", strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1))
	write(t, dir, "README.md", "not a manifest")
	src, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindDirectory || len(src.Objects) != 2 || src.Objects[1].File != filepath.Join(dir, "10-ctl.yaml") {
		t.Fatalf("directory: %s, %d objects, second from %s", src.Kind, len(src.Objects), src.Objects[1].File)
	}

	// The same with a kustomization that moves it and bumps the image.
	write(t, dir, "kustomization.yaml", `resources: [00-ns.yaml, 10-ctl.yaml]
images:
- name: registry.example.com/ctl
  newTag: "1.1"
`)
	src, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	imgs := Images(src)
	if src.Kind != KindKustomization || len(imgs) != 1 || imgs[0].Tag != "1.1" {
		t.Fatalf("kustomization: %s, images %+v", src.Kind, imgs)
	}
	write(t, dir, "kustomization.yaml", "resources: [missing.yaml]\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "kustomization.yaml")) {
		t.Fatalf("a broken kustomization: %v", err)
	}
}

// FuzzLoadValidate feeds arbitrary files to the loader and the checks:
// they must never panic, and every refusal must name the file.
func FuzzLoadValidate(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: net}\n"))
	f.Add([]byte(strings.Replace(strings.Replace(deploy, "%s", "net", 1), "%s", "1.0", 1)))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"))
	f.Add([]byte("---\n---\nkind: x\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := Load(p)
		if err == nil {
			err = Validate(src, cluster, Checks{})
		}
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// The version rule fits real releases: images of other projects at their
// own versions pass, one repository at two tags and an image of the
// release's own project left behind on its version line do not, and one
// release (a profile's choice) refuses any other tag.
func TestVersionRule(t *testing.T) {
	pod := func(images ...string) string {
		var b strings.Builder
		b.WriteString("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: net}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      initContainers:\n      - {name: install, image: \"" + images[0] + "\"}\n      containers:\n")
		for i, img := range images[1:] {
			fmt.Fprintf(&b, "      - {name: c%d, image: %q}\n", i, img)
		}
		return b.String()
	}
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: net}\n"
	flannel := pod("docker.io/flannel/flannel-cni-plugin:v1.6.2-flannel1", "docker.io/flannel/flannel:v0.26.7", "docker.io/flannel/flannel:v0.26.7")
	tests := []struct {
		name    string
		doc     string
		checks  Checks
		want    string // "" for valid
		release string
	}{
		{"another project's installer at its own version", flannel, Checks{}, "", "v0.26.7"},
		{"the same, one release asked for", flannel, Checks{OneRelease: true},
			"image docker.io/flannel/flannel-cni-plugin:v1.6.2-flannel1 is at v1.6.2-flannel1, the other images at v0.26.7 (the profile asks for one release", "v0.26.7"},
		{"an envoy of the same organisation on another version line", pod("quay.io/cilium/cilium:v1.16.5", "quay.io/cilium/cilium:v1.16.5",
			"quay.io/cilium/operator-generic:v1.16.5", "quay.io/cilium/cilium-envoy:v1.30.8-1733837904-eaae5aca0fb988583e5617170a65ac5aa51c0aa8"), Checks{}, "", "v1.16.5"},
		{"an image left behind on the release's line", pod("docker.io/calico/cni:v3.28.1", "docker.io/calico/node:v3.28.1", "docker.io/calico/kube-controllers:v3.28.0"), Checks{},
			"image docker.io/calico/kube-controllers:v3.28.0 is at v3.28.0, the release at v3.28.1: an image of the release's own project (docker.io/calico) and version line (3.28) left behind", "v3.28.1"},
		{"one repository at two tags", pod("example.com/net/agent:2.0", "example.com/net/agent:2.1", "example.com/net/agent:2.1"), Checks{},
			"image example.com/net/agent is at 2.0, and at 2.1 in", "2.1"},
		{"anything allowed", pod("example.com/net/agent:2.0", "example.com/net/agent:2.1", "example.com/net/agent:2.1"), Checks{MixedVersions: true}, "", "2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Load(write(t, t.TempDir(), "c.yaml", ns+"---\n"+tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(src, cluster, tt.checks)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if v := ImageVersions(src); v.Release != tt.release {
				t.Errorf("release %q, want %q (%v)", v.Release, tt.release, v.Images)
			}
		})
	}
}

func TestImageVersionsListTheReleaseFirst(t *testing.T) {
	doc := "apiVersion: v1\nkind: Namespace\nmetadata: {name: net}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: net}\nspec:\n  containers:\n" +
		"  - {name: a, image: quay.io/x/envoy:v1.30.0}\n  - {name: b, image: quay.io/x/agent:v2.0.1}\n  - {name: c, image: quay.io/x/ctl:v2.0.1}\n  - {name: d, image: busybox}\n"
	src, err := Load(write(t, t.TempDir(), "c.yaml", doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range ImageVersions(src).Images {
		got = append(got, fmt.Sprintf("%s@%v", v, v.AtRelease))
	}
	want := "quay.io/x/agent v2.0.1@true quay.io/x/ctl v2.0.1@true busybox (untagged)@false quay.io/x/envoy v1.30.0@false"
	if strings.Join(got, " ") != want {
		t.Errorf("images %q, want %q", strings.Join(got, " "), want)
	}
}
