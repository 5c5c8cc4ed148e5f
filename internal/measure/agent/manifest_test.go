package agent

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// The shipped DaemonSet parses, runs privileged on the host network with
// the host's files, and names the image asked for.
func TestManifest(t *testing.T) {
	objs, err := manifest.Parse("agent.yaml", strings.NewReader(Manifest(ManifestOptions{Image: "registry.example.com/hitless:v1"})))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	var ds appsv1.DaemonSet
	for _, u := range manifest.Unstructured(objs) {
		kinds[u.GetKind()] = true
		if u.GetKind() == "DaemonSet" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet"} {
		if !kinds[k] {
			t.Fatalf("manifest lacks a %s", k)
		}
	}
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	if !spec.HostNetwork || c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Fatal("the agent must be privileged on the host network")
	}
	if c.Image != "registry.example.com/hitless:v1" || !strings.Contains(strings.Join(c.Args, " "), "--root=/host") {
		t.Fatalf("image %q args %v", c.Image, c.Args)
	}
	mounts := map[string]string{}
	for _, v := range spec.Volumes {
		mounts[v.Name] = v.HostPath.Path
	}
	if mounts["host"] != "/" || mounts["modules"] != "/lib/modules" || mounts["boot"] != "/boot" {
		t.Fatalf("host paths %v", mounts)
	}
}

// On the pod network the agents advertise their pod's address, so that
// peers probe them pod to pod through the CNI.
func TestManifestPodNetwork(t *testing.T) {
	objs, err := manifest.Parse("agent.yaml", strings.NewReader(Manifest(ManifestOptions{PodNetwork: true})))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	for _, u := range manifest.Unstructured(objs) {
		if u.GetKind() == "DaemonSet" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	if spec.HostNetwork || spec.DNSPolicy != "ClusterFirst" || c.Image != DefaultImage {
		t.Fatalf("hostNetwork %t, dnsPolicy %s, image %s", spec.HostNetwork, spec.DNSPolicy, c.Image)
	}
	if !slices.Contains(c.Args, "--advertise=$(POD_IP)") || !slices.Contains(c.Args, "--host-netns=/proc/1/ns/net") {
		t.Fatalf("args %v", c.Args)
	}
	podIP := false
	for _, e := range c.Env {
		podIP = podIP || (e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP")
	}
	if !podIP {
		t.Fatalf("env %v lacks POD_IP from status.podIP", c.Env)
	}
}
