package controller

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/engine/lock"
)

// Media types of the artifacts an OCI source may be.
const (
	mediaHelmChart   = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	mediaFluxContent = "application/vnd.cncf.flux.content.v1.tar+gzip"
)

// Limits on what an artifact may unpack to.
const (
	maxArtifactBytes = 64 << 20
	maxArtifactFiles = 10000
)

// artifact is an OCI source resolved to its manifest's digest.
type artifact struct {
	ref    name.Reference
	opts   []remote.Option
	desc   *remote.Descriptor
	digest string
}

// resolveArtifact reads the artifact's manifest: its digest says whether
// anything changed without pulling the layers.
// Field is the source's path in the resource.
func resolveArtifact(ctx context.Context, kube kubernetes.Interface, src *v1alpha1.OCISource, field string) (*artifact, error) {
	secretField := field + ".pullSecret.name"
	field += ".ref"
	var opts []name.Option
	if src.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(src.Ref, opts...)
	if err != nil {
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: err.Error()}}
	}
	ropts := []remote.Option{remote.WithContext(ctx)}
	if src.PullSecret != nil {
		auth, err := pullAuth(ctx, kube, src.PullSecret.Name, ref.Context().RegistryStr(), secretField)
		if err != nil {
			return nil, err
		}
		ropts = append(ropts, remote.WithAuth(auth))
	}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("pulling %s: %v", ref, err)}, missing: true}
	}
	return &artifact{ref: ref, opts: ropts, desc: desc, digest: desc.Digest.String()}, nil
}

// files pulls the artifact's files: a Helm chart layer as one .tgz, a
// tar+gzip layer's regular files by path (one top directory that holds
// everything is dropped).
func (a *artifact) files(field string) (map[string][]byte, error) {
	ref, desc := a.ref, a.desc
	img, err := desc.Image()
	if err != nil {
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("%s is not an artifact with layers (%s): %v", ref, desc.MediaType, err)}}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", ref, err)
	}
	files := map[string][]byte{}
	size := 0
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("reading a layer of %s: %w", ref, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("pulling a layer of %s: %w", ref, err)
		}
		switch mt {
		case mediaHelmChart:
			b, err := io.ReadAll(io.LimitReader(rc, maxArtifactBytes+1))
			_ = rc.Close()
			if err != nil {
				return nil, fmt.Errorf("pulling the chart of %s: %w", ref, err)
			}
			if len(b) > maxArtifactBytes {
				return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("%s: the chart is over %d bytes", ref, maxArtifactBytes)}}
			}
			files[path.Base(ref.Context().RepositoryStr())+".tgz"] = b
		case mediaFluxContent, types.OCILayer, types.DockerLayer:
			err := untar(rc, files, &size)
			_ = rc.Close()
			if err != nil {
				return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("%s: %v", ref, err)}}
			}
		default:
			_ = rc.Close()
			// Other layers (provenance, signatures) are not the release.
		}
	}
	if len(files) == 0 {
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("%s has no layer of manifests (tar+gzip) or Helm chart (%s)", ref, mediaHelmChart)}}
	}
	return dropTopDir(files), nil
}

// untar adds a gzipped tarball's regular files to files.
func untar(r io.Reader, files map[string][]byte, size *int) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("reading the layer: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the layer: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if p == "." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
			return fmt.Errorf("the layer holds %q, outside its root", h.Name)
		}
		if old, ok := files[p]; ok {
			*size -= len(old) // a later entry of the same name wins, as tar extracts
		}
		if len(files) >= maxArtifactFiles {
			return fmt.Errorf("the layer holds over %d files", maxArtifactFiles)
		}
		b, err := io.ReadAll(io.LimitReader(tr, int64(maxArtifactBytes-*size)+1))
		if err != nil {
			return fmt.Errorf("reading %s in the layer: %w", h.Name, err)
		}
		if *size += len(b); *size > maxArtifactBytes {
			return fmt.Errorf("the layer unpacks to over %d bytes", maxArtifactBytes)
		}
		files[p] = b
	}
}

// dropTopDir drops the one top directory every file is under (a chart
// packaged as NAME/...), if there is one.
func dropTopDir(files map[string][]byte) map[string][]byte {
	top := ""
	for p := range files {
		dir, _, ok := strings.Cut(p, "/")
		if !ok || (top != "" && dir != top) {
			return files
		}
		top = dir
	}
	out := make(map[string][]byte, len(files))
	for p, b := range files {
		out[strings.TrimPrefix(p, top+"/")] = b
	}
	return out
}

// pullAuth reads the registry's credentials from a dockerconfigjson
// Secret in hitless-system.
func pullAuth(ctx context.Context, kube kubernetes.Interface, secret, registry, field string) (authn.Authenticator, error) {
	sec, err := kube.CoreV1().Secrets(lock.Namespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return nil, readError(bundle{name: "Secret " + lock.Namespace + "/" + secret, field: field}, err)
	}
	raw, ok := sec.Data[corev1.DockerConfigJsonKey]
	if sec.Type != corev1.SecretTypeDockerConfigJson || !ok {
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("Secret %s/%s is not of type %s with a %s key", lock.Namespace, secret, corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey)}}
	}
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		// The error names no value of the Secret.
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("Secret %s/%s: %s is not JSON", lock.Namespace, secret, corev1.DockerConfigJsonKey)}}
	}
	for host, a := range cfg.Auths {
		h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		if h, _, _ = strings.Cut(h, "/"); h == registry {
			return authn.FromConfig(a), nil
		}
	}
	return nil, &sourceError{FieldError: FieldError{Field: field, Msg: fmt.Sprintf("Secret %s/%s has no credentials for %s", lock.Namespace, secret, registry)}}
}
