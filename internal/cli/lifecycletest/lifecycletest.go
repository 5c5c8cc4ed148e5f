package lifecycletest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/hitless-dev/hitless/internal/cli/app"
	"github.com/hitless-dev/hitless/internal/component/release"
	"github.com/hitless-dev/hitless/internal/engine/lifecycle"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// Hitless runs the hitless CLI in process against env's cluster and
// returns its exit code, output and error output.
func Hitless(t *testing.T, env *clustertest.Env, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--kubeconfig", env.Kubeconfig(t)}, args...)
	code := app.Run(context.Background(), "hitless", args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// MustHitless runs a component command with -o json, fails the test
// unless it exits 0, and returns its result.
func MustHitless(t *testing.T, env *clustertest.Env, args ...string) *lifecycle.Result {
	t.Helper()
	code, out, errOut := Hitless(t, env, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("hitless %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	var res lifecycle.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("hitless %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return &res
}

// HitlessJSON runs a hitless command with -o json, fails the test unless
// it exits 0, and decodes its output into out.
func HitlessJSON(t *testing.T, env *clustertest.Env, out any, args ...string) {
	t.Helper()
	code, stdout, stderr := Hitless(t, env, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("hitless %s: exit %d\n%s\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("hitless %s: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// Patch patches an object as the field manager would.
func Patch(t *testing.T, env *clustertest.Env, apiVersion, resource, ns, name, manager string, pt types.PatchType, body string) {
	t.Helper()
	gv, _ := schema.ParseGroupVersion(apiVersion)
	dc := dynamic.NewForConfigOrDie(env.Config(t))
	if _, err := dc.Resource(gv.WithResource(resource)).Namespace(ns).Patch(context.Background(), name, pt, []byte(body), metav1.PatchOptions{FieldManager: manager}); err != nil {
		t.Fatalf("patching %s %s/%s: %v", resource, ns, name, err)
	}
}

// Get reads an object.
func Get(t *testing.T, env *clustertest.Env, apiVersion, resource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	gv, _ := schema.ParseGroupVersion(apiVersion)
	dc := dynamic.NewForConfigOrDie(env.Config(t))
	u, err := dc.Resource(gv.WithResource(resource)).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading %s %s/%s: %v", resource, ns, name, err)
	}
	return u
}

// Revisions lists a component's revisions.
func Revisions(t *testing.T, env *clustertest.Env, name string) []*release.Revision {
	t.Helper()
	revs, err := release.NewStore(env.Client(t)).List(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return revs
}

// Labelled lists, as Kind/namespace/name, every object of every listable
// type with the label, but Endpoints and EndpointSlices: the control
// plane copies a Service's labels to them and removes them with it.
func Labelled(t *testing.T, env *clustertest.Env, selector string) []string {
	t.Helper()
	dc := dynamic.NewForConfigOrDie(env.Config(t))
	disco := discovery.NewDiscoveryClientForConfigOrDie(env.Config(t))
	lists, _ := disco.ServerPreferredResources()
	var out []string
	for _, l := range lists {
		gv, _ := schema.ParseGroupVersion(l.GroupVersion)
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || r.Kind == "Endpoints" || r.Kind == "EndpointSlice" {
				continue
			}
			items, err := dc.Resource(gv.WithResource(r.Name)).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				continue
			}
			for _, it := range items.Items {
				out = append(out, r.Kind+"/"+it.GetNamespace()+"/"+it.GetName())
			}
		}
	}
	return out
}

// Snapshot reads every object of the component's current revision and
// returns each whole, as JSON by Kind/namespace/name, less what the
// server manages: status, the object's identity and bookkeeping in
// metadata, and the annotations the workload controllers write.
func Snapshot(t *testing.T, env *clustertest.Env, component string) map[string]string {
	t.Helper()
	cur := release.Current(Revisions(t, env, component))
	if cur == nil {
		t.Fatalf("component %s has no current revision", component)
	}
	out := map[string]string{}
	dc := dynamic.NewForConfigOrDie(env.Config(t))
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(env.Config(t))))
	for _, o := range release.Objects(cur.Applied) {
		m, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		live, err := dc.Resource(m.Resource).Namespace(o.GetNamespace()).Get(context.Background(), o.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("revision %d of %s: %v", cur.Number, component, err)
		}
		u := clustertest.Canonical(live)
		ann := u.GetAnnotations()
		delete(ann, "deprecated.daemonset.template.generation")
		delete(ann, "deployment.kubernetes.io/revision")
		if len(ann) == 0 {
			ann = nil
		}
		u.SetAnnotations(ann)
		out[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = JSON(u.Object)
	}
	return out
}

// SameObjects reports every object that differs between two snapshots
// of the component, and every object labelled as the component's that is
// not in the first.
func SameObjects(t *testing.T, env *clustertest.Env, when string, before, after map[string]string, component string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s, %s differs:\nbefore %s\nafter  %s", when, k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s, %s is in the inventory and was not before", when, k)
		}
	}
	var extra []string
	for _, k := range Labelled(t, env, "hitless.dev/name="+component) {
		if _, ok := before[k]; !ok {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	if len(extra) > 0 {
		t.Errorf("%s, objects of the other release left behind: %v", when, extra)
	}
}

// WriteFile writes content to a file named name in a new directory and
// returns its path.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// JSON is v's JSON.
func JSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// WaitSettled waits until DaemonSet ns/name has rolled out its template on
// every node and every pod is available.
func WaitSettled(t *testing.T, env *clustertest.Env, ns, name string) {
	t.Helper()
	clustertest.Eventually(t, 2*time.Minute, func() error {
		ds, err := env.Client(t).AppsV1().DaemonSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := ds.Status; st.ObservedGeneration < ds.Generation || st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberAvailable != st.DesiredNumberScheduled {
			return fmt.Errorf("DaemonSet %s/%s rolling: %+v", ns, name, st)
		}
		return nil
	})
}
