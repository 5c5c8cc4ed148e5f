package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/component"
	"github.com/hitless-dev/hitless/internal/component/chart"
	"github.com/hitless-dev/hitless/internal/engine/lock"
)

// bundle is a Component's release as its source holds it.
type bundle struct {
	// name is how the release and errors name it ("ConfigMap
	// hitless-system/contrail-v2").
	name string
	// field is the resource's path of the source.
	field  string
	source *component.Source
	chart  *chart.Chart
	// digest identifies the bundle's content.
	digest string
	// resolved is what status.source shows: the object, or the
	// artifact's digest.
	resolved string
}

// sourceError is a source that cannot be read or used; missing says it
// may yet be created (the controller looks again).
type sourceError struct {
	FieldError
	missing bool
}

// loadBundle reads the Component's source: a ConfigMap's or a Secret's
// keys in hitless-system are the release's files, or one packaged Helm
// chart.
//
// An artifact whose digest is the one last loaded (last) is not pulled
// again.
func loadBundle(ctx context.Context, kube kubernetes.Interface, c *v1alpha1.Component, last *bundle) (*bundle, error) {
	return loadSource(ctx, kube, c.Spec.Source, "spec.source", last)
}

// loadSource reads a source whose path in the resource is field.
func loadSource(ctx context.Context, kube kubernetes.Interface, src v1alpha1.ComponentSource, field string, last *bundle) (*bundle, error) {
	files := map[string][]byte{}
	var b bundle
	switch {
	case src.ConfigMap != nil:
		b.name, b.field = "ConfigMap "+lock.Namespace+"/"+src.ConfigMap.Name, field+".configMap.name"
		cm, err := kube.CoreV1().ConfigMaps(lock.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return nil, readError(b, err)
		}
		for k, v := range cm.Data {
			files[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			files[k] = v
		}
	case src.Secret != nil:
		b.name, b.field = "Secret "+lock.Namespace+"/"+src.Secret.Name, field+".secret.name"
		sec, err := kube.CoreV1().Secrets(lock.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
		if err != nil {
			return nil, readError(b, err)
		}
		for k, v := range sec.Data {
			files[k] = v
		}
	case src.OCI != nil:
		b.name, b.field = "OCI artifact "+src.OCI.Ref, field+".oci.ref"
		a, err := resolveArtifact(ctx, kube, src.OCI, field+".oci")
		if err != nil {
			return nil, err
		}
		b.resolved = a.ref.Context().String() + "@" + a.digest
		if last != nil && last.resolved == b.resolved {
			return last, nil
		}
		if files, err = a.files(b.field); err != nil {
			return nil, err
		}
	default:
		return nil, &sourceError{FieldError: FieldError{Field: field, Msg: "give configMap, secret or oci"}}
	}
	if b.resolved == "" {
		b.resolved = b.name
	}
	if err := b.load(files); err != nil {
		return nil, err
	}
	return &b, nil
}

// refusal classifies what the controller cannot use: the condition's
// reason and how soon the resource is looked at again (a missing source
// after RetryAfter, else again); ok is false for an error that is no
// refusal (the API server's).
func refusal(err error, again time.Duration) (reason string, after time.Duration, ok bool) {
	var (
		se *sourceError
		fe *FieldError
	)
	switch {
	case errors.As(err, &se) && se.missing:
		return reasonSourceNotFound, RetryAfter, true
	case errors.As(err, &se):
		return reasonInvalidSource, again, true
	case errors.As(err, &fe):
		return reasonInvalidSpec, again, true
	}
	return "", 0, false
}

func readError(b bundle, err error) error {
	if apierrors.IsNotFound(err) {
		return &sourceError{FieldError: FieldError{Field: b.field, Msg: b.name + " not found; the controller looks again every " + RetryAfter.String()}, missing: true}
	}
	return fmt.Errorf("reading %s: %w", b.name, err)
}

// load makes the release of files: one .tgz is a packaged chart; else the
// manifests (a kustomization built).
func (b *bundle) load(files map[string][]byte) error {
	names := make([]string, 0, len(files))
	h := sha256.New()
	for k := range files {
		names = append(names, k)
	}
	slices.Sort(names)
	var charts []string
	for _, k := range names {
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00", k, len(files[k]))
		h.Write(files[k])
		if strings.HasSuffix(k, ".tgz") {
			charts = append(charts, k)
		}
	}
	b.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
	bad := func(msg string) error {
		return &sourceError{FieldError: FieldError{Field: b.field, Msg: b.name + ": " + msg}}
	}
	switch {
	case len(names) == 0:
		return bad("empty: want the release's YAML files, or one packaged Helm chart (.tgz)")
	case len(charts) > 1 || (len(charts) == 1 && len(names) > 1):
		return bad(fmt.Sprintf("holds %s and %d other key(s): a chart bundle holds one .tgz and nothing else", strings.Join(charts, ", "), len(names)-1))
	case len(charts) == 1:
		c, err := chart.LoadArchive(b.name+": "+charts[0], bytes.NewReader(files[charts[0]]))
		if err != nil {
			return bad(err.Error())
		}
		b.chart = c
		return nil
	case slices.Contains(names, "Chart.yaml") && !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "/") }):
		return bad("holds an unpacked Helm chart (Chart.yaml) without its templates/ directory: package it (helm package) and put the .tgz in binaryData, as a ConfigMap's keys cannot hold directories")
	case slices.Contains(names, "Chart.yaml"):
		c, err := chart.LoadFiles(b.name, files)
		if err != nil {
			return bad(err.Error())
		}
		b.chart = c
		return nil
	}
	fsys := fstest.MapFS{}
	manifests := 0
	for _, k := range names {
		fsys[k] = &fstest.MapFile{Data: files[k], Mode: 0o444}
		switch path.Ext(k) {
		case ".yaml", ".yml", ".json":
			manifests++
		}
	}
	if manifests == 0 {
		return bad(fmt.Sprintf("no .yaml, .yml or .json key among %s", strings.Join(names, ", ")))
	}
	src, err := component.LoadFS(b.name, fsys)
	if err != nil {
		return bad(err.Error())
	}
	b.source = src
	return nil
}
