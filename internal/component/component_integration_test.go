package component_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
	"github.com/hitless-dev/hitless/internal/localcluster/upstream"
)

var env = clustertest.New(clustertest.Options{Workers: 1})

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// Against a real API server's discovery: Antrea's release validates
// (its APIServices, webhooks and CRDs included); the sample plugin's
// custom resources are known through its own CRDs; a manifest naming a
// namespace the cluster lacks is refused.
func TestValidateAgainstTheCluster(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	scope, err := component.NewClusterScope(ctx, env.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{upstream.Path(t, "cni", "antrea", "antrea-v2.7.0.yml"), upstream.Path(t, "cni", "kube-router", "kubeadm-kuberouter-v2.1.0.yaml"), "../../examples/sample-plugin/v2"} {
		src, err := component.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := component.Validate(src, scope, component.Checks{}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	src, err := component.Load(writeTemp(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "+ns+"}\n---\n"+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: "+ns+"-gone}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = component.Validate(src, scope, component.Checks{})
	if !errors.Is(err, component.ErrInvalid) || !strings.Contains(err.Error(), "document 2 (ConfigMap/"+ns+"-gone/b)") || strings.Contains(err.Error(), "ConfigMap/"+ns+"/a") {
		t.Fatalf("want only the ConfigMap in a missing namespace refused: %v", err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return f.Name()
}
