package kubelet

import (
	"testing"

	"github.com/itchyny/gojq"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestRepository(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"docker.io/cloudnativelabs/kube-router", "cloudnativelabs/kube-router"},
		{"cloudnativelabs/kube-router:v2.1.0", "cloudnativelabs/kube-router"},
		{"docker.io/library/busybox:1.36", "busybox"},
		{"ghcr.io/hitless-dev/hitless@sha256:abcd", "ghcr.io/hitless-dev/hitless"},
		{"ghcr.io/hitless-dev/hitless:v1@sha256:abcd", "ghcr.io/hitless-dev/hitless"},
		{"registry.local:5000/flannel/flannel:v0.26.0", "registry.local:5000/flannel/flannel"},
		{"registry.local:5000/flannel/flannel", "registry.local:5000/flannel/flannel"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			if got := Repository(tc.ref); got != tc.want {
				t.Fatalf("Repository(%q) = %q, want %q", tc.ref, got, tc.want)
			}
		})
	}
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Image
		wantErr bool
	}{
		{in: "flannel/flannel=/opt/lab/flanneld", want: Image{Repository: "flannel/flannel", Binary: "/opt/lab/flanneld", Entrypoint: "/usr/local/bin/flanneld"}},
		{in: "docker.io/flannel/flannel:v0.26=/opt/lab/flanneld:/opt/bin/flanneld", want: Image{Repository: "flannel/flannel", Binary: "/opt/lab/flanneld", Entrypoint: "/opt/bin/flanneld"}},
		{in: "flannel/flannel", wantErr: true},
		{in: "=/bin/x", wantErr: true},
		{in: "flannel/flannel=relative/flanneld", wantErr: true},
		{in: "flannel/flannel=/bin/x:relative", wantErr: true},
		{in: "Flannel/UPPER=/bin/x", wantErr: true},
		{in: "reg:5000/a=/bin/x", want: Image{Repository: "reg:5000/a", Binary: "/bin/x", Entrypoint: "/usr/local/bin/x"}},
		{in: "a=/bin/", wantErr: true}, // a directory, not a binary
		{in: "a=/bin/x:/usr/bin/", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseImage(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseImage(%q) error %v, want error %t", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && (got.Repository != tc.want.Repository || got.Binary != tc.want.Binary || got.Entrypoint != tc.want.Entrypoint) {
				t.Fatalf("ParseImage(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// The KWOK stage expression (jq, as KWOK evaluates it) picks exactly the
// pods Runs picks: every container's image known, init containers too.
func TestStageExclusionMatchesRuns(t *testing.T) {
	images := Images{
		"cloudnativelabs/kube-router": {Repository: "cloudnativelabs/kube-router"},
		"ghcr.io/hitless-dev/hitless": {Repository: "ghcr.io/hitless-dev/hitless"},
	}
	q, err := gojq.Parse(images.StageExclusion())
	if err != nil {
		t.Fatalf("the expression does not parse: %v", err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		t.Fatal(err)
	}
	pod := func(init []string, containers ...string) *corev1.Pod {
		p := &corev1.Pod{}
		for _, i := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "i", Image: i})
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c", Image: c})
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"kube-router, untagged, with docker.io", pod([]string{"docker.io/cloudnativelabs/kube-router"}, "docker.io/cloudnativelabs/kube-router"), true},
		{"tagged and digested", pod(nil, "cloudnativelabs/kube-router:v2.1.0@sha256:00"), true},
		{"hitless", pod(nil, "ghcr.io/hitless-dev/hitless:lab"), true},
		{"an unknown sidecar", pod(nil, "cloudnativelabs/kube-router:v2.1.0", "registry.example.com/sidecar:v1"), false},
		{"an unknown init container", pod([]string{"busybox:1.36"}, "cloudnativelabs/kube-router"), false},
		{"a look-alike", pod(nil, "evil.io/cloudnativelabs/kube-router:v1"), false},
		{"another app", pod(nil, "nginx:1.27"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := code.Run(obj).Next()
			if !ok {
				t.Fatal("no result")
			}
			if err, isErr := v.(error); isErr {
				t.Fatalf("evaluating: %v", err)
			}
			if v != tc.want || images.Runs(tc.pod) != tc.want {
				t.Fatalf("stage expression %v, Runs %t; want %t", v, images.Runs(tc.pod), tc.want)
			}
		})
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{"flannel/flannel=/opt/flanneld", "a=b", "x=/y:/z", "reg:5000/a/b:t=/bin/x:/usr/bin/x", "=", ":=/:",
		// Found by the fuzzer: a registry's host:port is no repository,
		// and a directory no binary.
		"g:5:t=/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		img, err := ParseImage(s)
		if err != nil {
			return
		}
		if img.Repository == "" || img.Binary[0] != '/' || img.Entrypoint[0] != '/' || Repository(img.Repository) != img.Repository {
			t.Fatalf("ParseImage(%q) = %+v", s, img)
		}
	})
}
