package component

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

const huskBase = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: net, resourceVersion: "7"}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
      - name: agent
        image: x:1
`

func TestHusks(t *testing.T) {
	rich := huskBase + "        livenessProbe: {httpGet: {path: /h, port: http}}\n        ports: [{name: http, containerPort: 80}]\n"
	live := huskBase + "        livenessProbe: {httpGet: {path: /h, port: http, scheme: HTTP}, timeoutSeconds: 1}\n        ports: [{name: http, containerPort: 80, protocol: TCP}]\n"
	foreign := `  managedFields:
  - manager: kubectl-edit
    operation: Update
    apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1: {"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"agent\"}":{"f:livenessProbe":{"f:timeoutSeconds":{}}}}}}}}
`
	tc := applyconfigurations.NewTypeConverter(scheme.Scheme)
	tests := []struct {
		name                    string
		desired, live, previous string
		want, notWant           string
	}{
		{"a dropped probe goes whole", huskBase, live, rich, `/spec/template/spec/containers/0/livenessProbe`, ""},
		{"a kept probe stays", rich, live, rich, "", ""},
		{"a probe a person tuned is left to server-side apply", huskBase, strings.Replace(live, "metadata: {name: agent, namespace: net, resourceVersion: \"7\"}", "metadata:\n  name: agent\n  namespace: net\n  resourceVersion: \"7\"\n"+foreign, 1), rich,
			`/spec/template/spec/containers/0/ports`, "livenessProbe"},
		{"no previous, no husk", huskBase, live, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev *unstructured.Unstructured
			if tt.previous != "" {
				prev = obj(t, tt.previous)
			}
			l := obj(t, tt.live)
			paths, err := Husks(tc, obj(t, tt.desired), l, prev, "hitless")
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if len(paths) > 0 {
				b, err := RemovePatch(l, paths)
				if err != nil {
					t.Fatal(err)
				}
				got = string(b)
			}
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) || (tt.notWant != "" && strings.Contains(got, tt.notWant)) {
				t.Fatalf("patch %s, want one removing %q and not %q", got, tt.want, tt.notWant)
			}
		})
	}
}
