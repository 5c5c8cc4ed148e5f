package lifecycle_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeComponent writes a component at version ("1.0.0", "1.1.0") into a
// new directory: crds CRDs with one custom resource each, a namespace
// with a ServiceAccount, RBAC, configs ConfigMaps, a Service, a
// controller Deployment (2 replicas) and a data-plane DaemonSet on every
// node. The later version adds a CRD field and a ConfigMap key, bumps
// every image, drops the last settings ConfigMap and adds ConfigMap
// features.
func writeComponent(t testing.TB, name, version string, crds, configs int) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	doc := func(format string, args ...any) {
		b.WriteString("---\n")
		fmt.Fprintf(&b, format, args...)
	}
	later := version != "1.0.0"
	group := name + ".bench.hitless.dev"
	for i := range crds {
		extra := ""
		if later {
			extra = "\n                tuning: {type: integer}"
		}
		doc(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: kind%ds.%s}
spec:
  group: %s
  scope: Cluster
  names: {kind: Kind%d, plural: kind%ds, singular: kind%d, listKind: Kind%dList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
                size: {type: integer}%s
`, i, group, group, i, i, i, i, extra)
		spec := "size: 1"
		if later {
			spec += ", tuning: 2"
		}
		doc("apiVersion: %s/v1\nkind: Kind%d\nmetadata: {name: default}\nspec: {%s}\n", group, i, spec)
	}
	doc("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name)
	doc("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", name, name)
	doc("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: %s}\nrules:\n- {apiGroups: [\"\"], resources: [nodes], verbs: [get, list, watch]}\n", name)
	doc("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: %s}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %s}\nsubjects:\n- {kind: ServiceAccount, name: %s, namespace: %s}\n", name, name, name, name)
	for i := range configs {
		if later && i == configs-1 {
			doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: features, namespace: %s}\ndata: {FAST_PATH: \"on\"}\n", name)
			continue
		}
		data := fmt.Sprintf("MTU: \"1500\"\n  INDEX: \"%d\"", i)
		if later {
			data += "\n  FLOW_EXPORT: \"off\""
		}
		doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings-%d, namespace: %s}\ndata:\n  %s\n", i, name, data)
	}
	doc("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec:\n  selector: {app: %s-controller}\n  ports: [{port: 8443}]\n", name, name, name)
	doc(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s-controller, namespace: %[1]s}
spec:
  replicas: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  selector: {matchLabels: {app: %[1]s-controller}}
  template:
    metadata: {labels: {app: %[1]s-controller}}
    spec:
      serviceAccountName: %[1]s
      terminationGracePeriodSeconds: 1
      containers:
      - {name: controller, image: "registry.example.com/%[1]s/controller:%[2]s"}
`, name, version)
	doc(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %[1]s-agent
  namespace: %[1]s
  annotations: {hitless.dev/data-plane: "true"}
spec:
  selector: {matchLabels: {app: %[1]s-agent}}
  template:
    metadata: {labels: {app: %[1]s-agent}}
    spec:
      serviceAccountName: %[1]s
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      tolerations: [{operator: Exists}]
      containers:
      - {name: agent, image: "registry.example.com/%[1]s/agent:%[2]s"}
`, name, version)
	path := filepath.Join(dir, name+"-"+version+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
