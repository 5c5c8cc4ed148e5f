package lifecycle_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
)

// structured writes a release of a data-plane DaemonSet in namespace ns:
// the base one, or (rich) one that adds what releases add and remove:
// probes on a named port, a container port, a securityContext, a host
// volume, an init container and an update strategy.
func structured(t *testing.T, ns string, rich bool) string {
	t.Helper()
	tag, extra, podExtra, spec := "1.0", "", "", ""
	if rich {
		tag = "1.1"
		extra = `
        ports: [{name: http, containerPort: 8080}]
        livenessProbe: {httpGet: {path: /healthz, port: http}}
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 5}
        securityContext: {capabilities: {add: [NET_ADMIN]}}
        volumeMounts: [{name: run, mountPath: /run/agent}]`
		podExtra = `
      initContainers:
      - {name: install, image: "example.com/structure/install:1.1", command: [/install]}
      volumes: [{name: run, hostPath: {path: /run/agent}}]`
		spec = `
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}`
	}
	doc := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: %[1]s, annotations: {hitless.dev/data-plane: "true"}}
spec:
  selector: {matchLabels: {app: agent}}%[4]s
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations: [{operator: Exists}]%[3]s
      containers:
      - name: agent
        image: "example.com/structure/agent:%[5]s"%[2]s
`, ns, extra, podExtra, spec, tag)
	return lifecycletest.WriteFile(t, "release.yaml", doc)
}

// Releases that add and then remove nested structure the server defaults
// (probes, ports, securityContext, volumes, init containers, update
// strategy) upgrade, roll back and downgrade into valid objects, and a
// rollback restores the spec exactly.
func TestStructureAddedAndRemoved(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first, next bool // rich or base
	}{
		{"upgrade adds structure, rollback removes it", false, true},
		{"downgrade removes structure, rollback adds it back", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "structure-" + map[bool]string{false: "up", true: "down"}[tc.first]
			first, next := structured(t, name, tc.first), structured(t, name, tc.next)
			mustHitless(t, "install", "-f", first, "--name", name, "--batch", "100%")
			before := daemonSet(t, name, "agent")
			// The diff shows the dropped structures going, changing nothing.
			code, out, stderr := hitless(t, "diff", "-f", next, "--name", name)
			if code != 0 || !strings.Contains(out, "livenessProbe") {
				t.Errorf("diff: exit %d, want 0 and the probe in the changes\n%s\n%s", code, out, stderr)
			}
			if daemonSet(t, name, "agent") != before {
				t.Errorf("the diff changed the DaemonSet")
			}
			mustHitless(t, "upgrade", "-f", next, "--name", name, "--batch", "100%")
			upgraded := daemonSet(t, name, "agent")
			for _, field := range []string{"livenessProbe", "readinessProbe", "initContainers", "securityContext\":{\"capabilities", "containerPort", "hostPath", "maxUnavailable\":2"} {
				if strings.Contains(upgraded, field) != tc.next {
					t.Errorf("after the upgrade, %s present: %v, want %v:\n%s", field, !tc.next, tc.next, upgraded)
				}
			}
			mustHitless(t, "rollback", "--name", name, "--batch", "100%")
			if after := daemonSet(t, name, "agent"); after != before {
				t.Errorf("spec after the rollback:\n%s\nwant, as before the upgrade:\n%s", after, before)
			}
			mustHitless(t, "uninstall", "--name", name)
		})
	}
}

// A release that bundles another project's image at that project's own
// version (flannel's CNI plugin installer beside flannel) installs as it
// comes; a profile that asks for one release (cn2) refuses it, naming
// the image, and changes nothing.
func TestBundledImagesOfOtherProjects(t *testing.T) {
	ns := "bundled"
	doc := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: flannel, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: flannel}}
  template:
    metadata: {labels: {app: flannel}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations: [{operator: Exists}]
      initContainers:
      - {name: install-cni-plugin, image: "docker.io/flannel/flannel-cni-plugin:v1.6.2-flannel1", command: [cp]}
      - {name: install-cni, image: "docker.io/flannel/flannel:v0.26.7", command: [cp]}
      containers:
      - {name: kube-flannel, image: "docker.io/flannel/flannel:v0.26.7"}
`, ns)
	path := lifecycletest.WriteFile(t, "kube-flannel.yml", doc)
	code, out, stderr := hitless(t, "install", "-f", path, "--name", "bundled", "--profile", "cn2", "--batch", "100%")
	if code != 2 || !strings.Contains(stderr, "image docker.io/flannel/flannel-cni-plugin:v1.6.2-flannel1 is at v1.6.2-flannel1, the other images at v0.26.7 (the profile asks for one release; allow with --allow-mixed-versions)") {
		t.Fatalf("install with the cn2 profile: exit %d, want 2 naming the installer image\n%s\n%s", code, out, stderr)
	}
	if left := labelled(t, "hitless.dev/name=bundled"); len(left) > 0 {
		t.Fatalf("a refused install left %v", left)
	}
	code, out, stderr = hitless(t, "install", "-f", path, "--name", "bundled", "--batch", "100%")
	if code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"IMAGES at release v0.26.7 (1): docker.io/flannel/flannel", "docker.io/flannel/flannel-cni-plugin v1.6.2-flannel1 (DaemonSet/bundled/flannel)"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	mustHitless(t, "uninstall", "--name", "bundled")
}
