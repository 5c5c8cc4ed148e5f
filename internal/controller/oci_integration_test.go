package controller_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/cli/lifecycletest"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/localcluster/clustertest"
)

// tgz packs files (path: content) as a gzipped tarball.
func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for p, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// push writes a one-layer artifact of mediaType to ref, as flux push
// artifact or helm push would, and returns its digest.
func push(t *testing.T, ref string, config, mediaType types.MediaType, layer []byte, auth authn.Authenticator) string {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, config)
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(layer, mediaType)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// privateRegistry serves an OCI registry on loopback that asks every
// request for user:pass.
func privateRegistry(t *testing.T) string {
	t.Helper()
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "puller" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Components from an OCI registry: a tarball of manifests (flux push
// artifact's media type) and a Helm chart (helm push's), pulled with the
// credentials of a dockerconfigjson Secret. Without them the pull is
// refused and named; a tag moved in the registry is upgraded to on the
// next resync, the digest shown in the status.
func TestComponentFromOCI(t *testing.T) {
	env.InstallCRDs(t)
	c := env.APIClient(t)
	ctx := context.Background()
	cs := env.Client(t)
	host := privateRegistry(t)
	auth := &authn.Basic{Username: "puller", Password: "s3cret"}
	cm := func(data string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: oci-settings, namespace: default}\ndata: {level: " + data + "}\n"
	}
	first := push(t, host+"/plugins/settings:1.0", "application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip",
		tgz(t, map[string]string{"./settings.yaml": cm("one")}), auth)
	push(t, host+"/charts/greeter:0.1.0", "application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
		tgz(t, map[string]string{
			"greeter/Chart.yaml":        "apiVersion: v2\nname: greeter\nversion: 0.1.0\n",
			"greeter/values.yaml":       "greeting: hello\n",
			"greeter/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: greeter, namespace: default}\ndata: {greeting: {{ .Values.greeting | quote }}}\n",
		}), auth)
	env.StartController(t, "--component-resync", "2s")

	comp := &v1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: "oci-settings"},
		Spec: v1alpha1.ComponentSpec{
			Source: v1alpha1.ComponentSource{OCI: &v1alpha1.OCISource{Ref: host + "/plugins/settings:1.0", Insecure: true}},
			Batch:  intstr.FromInt32(1),
		},
	}
	if err := c.Create(ctx, comp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), comp)
		if code, out, errb := lifecycletest.Hitless(t, env, "uninstall", "--name", comp.Name); code != 0 {
			t.Errorf("uninstall: exit %d\n%s\n%s", code, out, errb)
		}
	})
	t.Run("without credentials the pull is refused and named", func(t *testing.T) {
		comp := env.WaitComponent(t, c, comp.Name, v1alpha1.PhaseFailed, time.Minute)
		failed := conditionTrueOf(comp.Status.Conditions, v1alpha1.ConditionFailed)
		if failed == nil || failed.Reason != "SourceNotFound" || !strings.Contains(failed.Message, "spec.source.oci.ref") || !strings.Contains(failed.Message, "UNAUTHORIZED") {
			t.Errorf("Failed condition %+v, want SourceNotFound naming spec.source.oci.ref and UNAUTHORIZED", failed)
		}
	})

	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte("puller:s3cret")))
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry-pull", Namespace: store.Namespace}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
	if _, err := cs.CoreV1().Secrets(store.Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Secrets(store.Namespace).Delete(context.Background(), sec.Name, metav1.DeleteOptions{})
	})
	patch := client.MergeFrom(comp.DeepCopy())
	comp.Spec.Source.OCI.PullSecret = &v1alpha1.BundleRef{Name: sec.Name}
	if err := c.Patch(ctx, comp, patch); err != nil {
		t.Fatal(err)
	}
	level := func() string {
		got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "oci-settings", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return got.Data["level"]
	}
	t.Run("installed with the pull secret's credentials", func(t *testing.T) {
		comp := env.WaitComponent(t, c, comp.Name, v1alpha1.PhaseReady, time.Minute)
		if want := host + "/plugins/settings@" + first; comp.Status.Source != want {
			t.Errorf("status.source %q, want %q", comp.Status.Source, want)
		}
		if got := level(); got != "one" {
			t.Errorf("the artifact's ConfigMap: level %q, want one", got)
		}
	})
	t.Run("a tag moved in the registry is upgraded to", func(t *testing.T) {
		second := push(t, host+"/plugins/settings:1.0", "application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip",
			tgz(t, map[string]string{"./settings.yaml": cm("two")}), auth)
		clustertest.Eventually(t, time.Minute, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(comp), comp); err != nil {
				return err
			}
			if comp.Status.Phase != v1alpha1.PhaseReady || comp.Status.Revision != 2 {
				return fmt.Errorf("Component %s at revision %d", comp.Status.Phase, comp.Status.Revision)
			}
			return nil
		})
		if want := host + "/plugins/settings@" + second; comp.Status.Source != want {
			t.Errorf("status.source %q, want %q", comp.Status.Source, want)
		}
		if got := level(); got != "two" {
			t.Errorf("level %q after the tag moved, want two", got)
		}
	})
	t.Run("a Helm chart pushed with helm push, with values", func(t *testing.T) {
		chart := &v1alpha1.Component{
			ObjectMeta: metav1.ObjectMeta{Name: "greeter"},
			Spec: v1alpha1.ComponentSpec{
				Source: v1alpha1.ComponentSource{OCI: &v1alpha1.OCISource{Ref: host + "/charts/greeter:0.1.0", Insecure: true, PullSecret: &v1alpha1.BundleRef{Name: sec.Name}}},
				Batch:  intstr.FromInt32(1),
				Values: &runtime.RawExtension{Raw: []byte(`{"greeting":"bonjour"}`)},
			},
		}
		if err := c.Create(ctx, chart); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Delete(context.Background(), chart)
			if code, out, errb := lifecycletest.Hitless(t, env, "uninstall", "--name", chart.Name); code != 0 {
				t.Errorf("uninstall: exit %d\n%s\n%s", code, out, errb)
			}
		})
		env.WaitComponent(t, c, chart.Name, v1alpha1.PhaseReady, time.Minute)
		got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "greeter", metav1.GetOptions{})
		if err != nil || got.Data["greeting"] != "bonjour" {
			t.Errorf("the chart's ConfigMap: %+v, %v; want greeting bonjour", got, err)
		}
	})
	if strings.Contains(fmt.Sprint(env.Events(t, "Component", comp.Name)), "s3cret") {
		t.Error("an Event shows the registry password")
	}
}
