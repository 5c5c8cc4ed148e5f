package kubelet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// EnvPod marks every process the lab kubelet starts with its pod's UID.
const EnvPod = "HITLESS_LAB_POD"

// configError is a pod the lab kubelet cannot run as written (a kubelet's
// CreateContainerConfigError).
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// volumes materialises the pod's volumes under dir and returns where each
// is on the host.
func (w *worker) volumes(ctx context.Context, dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range w.pod.Spec.Volumes {
		path, err := w.volume(ctx, dir, v)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		out[v.Name] = path
	}
	return out, nil
}

func (w *worker) volume(ctx context.Context, dir string, v corev1.Volume) (string, error) {
	own := filepath.Join(dir, "volumes", v.Name)
	switch {
	case v.HostPath != nil:
		return w.hostPath(v.HostPath)
	case v.EmptyDir != nil:
		return own, os.MkdirAll(own, 0o777)
	case v.ConfigMap != nil:
		return own, w.writeConfigMap(ctx, own, v.ConfigMap.Name, v.ConfigMap.Items, ptr.Deref(v.ConfigMap.Optional, false), mode(v.ConfigMap.DefaultMode, 0o644))
	case v.Secret != nil:
		return own, w.writeSecret(ctx, own, v.Secret.SecretName, v.Secret.Items, ptr.Deref(v.Secret.Optional, false), mode(v.Secret.DefaultMode, 0o644))
	case v.DownwardAPI != nil:
		return own, w.writeDownward(own, v.DownwardAPI.Items)
	case v.Projected != nil:
		return own, w.writeProjected(ctx, own, v.Projected)
	}
	return "", &configError{msg: "the lab kubelet supports hostPath, emptyDir, configMap, secret, downwardAPI and projected volumes"}
}

// hostPath maps a host path into the node's root, creating it as its type
// says (and a directory when it has none and is missing, as container
// runtimes do).
func (w *worker) hostPath(h *corev1.HostPathVolumeSource) (string, error) {
	p := filepath.Join(w.k.nodeRoot(w.node.Name), filepath.Clean("/"+h.Path))
	t := ptr.Deref(h.Type, corev1.HostPathUnset)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	switch t {
	case corev1.HostPathFileOrCreate:
		return p, touch(p)
	case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate:
		return p, os.MkdirAll(p, 0o755)
	}
	return "", &configError{msg: fmt.Sprintf("hostPath %s of type %s does not exist on node %s", h.Path, t, w.node.Name)}
}

func mode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & 0o777
}

func writeFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, def os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return &configError{msg: fmt.Sprintf("key %q is missing", it.Key)}
		}
		p := filepath.Join(dir, filepath.Clean("/"+it.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, mode(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) configMapData(ctx context.Context, name string, optional bool) (map[string][]byte, error) {
	cm, err := w.k.cs.CoreV1().ConfigMaps(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configmap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, nil
}

func (w *worker) secretData(ctx context.Context, name string, optional bool) (map[string][]byte, error) {
	s, err := w.k.cs.CoreV1().Secrets(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return s.Data, nil
}

func (w *worker) writeConfigMap(ctx context.Context, dir, name string, items []corev1.KeyToPath, optional bool, def os.FileMode) error {
	data, err := w.configMapData(ctx, name, optional)
	if err != nil {
		return err
	}
	return writeFiles(dir, data, items, def)
}

func (w *worker) writeSecret(ctx context.Context, dir, name string, items []corev1.KeyToPath, optional bool, def os.FileMode) error {
	data, err := w.secretData(ctx, name, optional)
	if err != nil {
		return err
	}
	return writeFiles(dir, data, items, def)
}

func (w *worker) writeDownward(dir string, items []corev1.DownwardAPIVolumeFile) error {
	data := map[string][]byte{}
	var keys []corev1.KeyToPath
	for _, it := range items {
		if it.FieldRef == nil {
			return &configError{msg: "downwardAPI resourceFieldRef is not supported by the lab kubelet"}
		}
		v, err := w.field(it.FieldRef.FieldPath)
		if err != nil {
			return err
		}
		data[it.Path] = []byte(v)
		keys = append(keys, corev1.KeyToPath{Key: it.Path, Path: it.Path, Mode: it.Mode})
	}
	return writeFiles(dir, data, keys, 0o644)
}

func (w *worker) writeProjected(ctx context.Context, dir string, p *corev1.ProjectedVolumeSource) error {
	def := mode(p.DefaultMode, 0o644)
	for _, s := range p.Sources {
		var err error
		switch {
		case s.ServiceAccountToken != nil:
			err = w.writeToken(ctx, dir, s.ServiceAccountToken, def)
		case s.ConfigMap != nil:
			err = w.writeConfigMap(ctx, dir, s.ConfigMap.Name, s.ConfigMap.Items, ptr.Deref(s.ConfigMap.Optional, false), def)
		case s.Secret != nil:
			err = w.writeSecret(ctx, dir, s.Secret.Name, s.Secret.Items, ptr.Deref(s.Secret.Optional, false), def)
		case s.DownwardAPI != nil:
			err = w.writeDownward(dir, s.DownwardAPI.Items)
		default:
			err = &configError{msg: "projected sources the lab kubelet supports: serviceAccountToken, configMap, secret, downwardAPI"}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeToken asks the API server for the pod's service account token,
// bound to the pod, as a kubelet does.
func (w *worker) writeToken(ctx context.Context, dir string, s *corev1.ServiceAccountTokenProjection, def os.FileMode) error {
	sa := w.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: s.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: w.pod.Name, UID: w.pod.UID},
	}}
	if s.Audience != "" {
		req.Spec.Audiences = []string{s.Audience}
	}
	tr, err := w.k.cs.CoreV1().ServiceAccounts(w.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token of service account %s: %w", sa, err)
	}
	return writeFiles(dir, map[string][]byte{s.Path: []byte(tr.Status.Token)}, nil, def)
}

// field resolves a downward API field path.
func (w *worker) field(path string) (string, error) {
	p := w.pod
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return w.node.IP, nil
	case "status.podIP":
		return w.podIP, nil
	case "status.hostIPs":
		return w.node.IP, nil
	case "status.podIPs":
		return w.podIP, nil
	}
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels", p.Labels}, {"metadata.annotations", p.Annotations}} {
		if path == m.prefix {
			keys := make([]string, 0, len(m.values))
			for k := range m.values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(m.values[k]))
			}
			return b.String(), nil
		}
		if k, ok := strings.CutPrefix(path, m.prefix+"['"); ok {
			return m.values[strings.TrimSuffix(k, "']")], nil
		}
	}
	return "", &configError{msg: fmt.Sprintf("field %q is not supported by the lab kubelet", path)}
}

// env is a container's environment, as a kubelet builds it: the service
// variables of the API server (its relay), the pod's own, then envFrom and
// env in order, $(VAR) references expanded.
func (w *worker) env(ctx context.Context, c corev1.Container) ([]string, error) {
	host, port, err := net.SplitHostPort(w.k.cfg.Relay)
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", w.k.cfg.Relay, err)
	}
	hostname := w.pod.Name
	if w.pod.Spec.HostNetwork {
		hostname = w.node.Name
	}
	vars := map[string]string{
		"PATH":                          "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME":                      hostname,
		"KUBERNETES_SERVICE_HOST":       host,
		"KUBERNETES_SERVICE_PORT":       port,
		"KUBERNETES_SERVICE_PORT_HTTPS": port,
		"KUBERNETES_PORT":               "tcp://" + w.k.cfg.Relay,
		EnvPod:                          string(w.pod.UID),
	}
	order := []string{"PATH", "HOSTNAME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT_HTTPS", "KUBERNETES_PORT", EnvPod}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range c.EnvFrom {
		var data map[string][]byte
		switch {
		case from.ConfigMapRef != nil:
			data, err = w.configMapData(ctx, from.ConfigMapRef.Name, ptr.Deref(from.ConfigMapRef.Optional, false))
		case from.SecretRef != nil:
			data, err = w.secretData(ctx, from.SecretRef.Name, ptr.Deref(from.SecretRef.Optional, false))
		}
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, string(data[k]))
		}
	}
	if img, ok := w.k.cfg.Images.Lookup(c.Image); ok {
		for _, kv := range img.Env {
			k, v, _ := strings.Cut(kv, "=")
			set(k, v)
		}
	}
	for _, e := range c.Env {
		v, err := w.envValue(ctx, e, vars)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func (w *worker) envValue(ctx context.Context, e corev1.EnvVar, vars map[string]string) (string, error) {
	if e.ValueFrom == nil {
		return expand(e.Value, vars), nil
	}
	switch f := e.ValueFrom; {
	case f.FieldRef != nil:
		return w.field(f.FieldRef.FieldPath)
	case f.ConfigMapKeyRef != nil:
		data, err := w.configMapData(ctx, f.ConfigMapKeyRef.Name, ptr.Deref(f.ConfigMapKeyRef.Optional, false))
		return string(data[f.ConfigMapKeyRef.Key]), err
	case f.SecretKeyRef != nil:
		data, err := w.secretData(ctx, f.SecretKeyRef.Name, ptr.Deref(f.SecretKeyRef.Optional, false))
		return string(data[f.SecretKeyRef.Key]), err
	case f.ResourceFieldRef != nil:
		return "", nil
	}
	return "", &configError{msg: "unsupported valueFrom"}
}

// expand replaces $(VAR) with defined variables and $$ with $, as the
// kubelet expands env values, commands and args.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
