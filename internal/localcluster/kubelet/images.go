package kubelet

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Image is what the lab runs for a container image: a binary built on
// this machine in place of the image's own.
type Image struct {
	// Repository is the image's name without registry docker.io, tag or
	// digest ("cloudnativelabs/kube-router").
	Repository string `json:"repository"`
	// Binary is the local path of the program the image runs.
	Binary string `json:"binary"`
	// Entrypoint is where the image keeps that program; a container that
	// names no command runs it, and one that names it finds it there.
	Entrypoint string `json:"entrypoint"`
	// Env is added to the environment of the image's containers (a test
	// binary standing in for hitless needs a variable to act as it).
	Env []string `json:"env,omitempty"`
}

// Images maps repositories to what the lab runs for them.
type Images map[string]Image

// Repository returns the repository of an image reference as Images keys
// it: digest, tag and a docker.io/ (and docker.io/library/) prefix dropped.
func Repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	ref = strings.TrimPrefix(ref, "docker.io/")
	return strings.TrimPrefix(ref, "library/")
}

// Lookup returns what runs for an image reference.
func (m Images) Lookup(ref string) (Image, bool) {
	img, ok := m[Repository(ref)]
	return img, ok
}

// Runs reports whether the lab kubelet runs the pod: every container's
// image, init containers' too, is known. KWOK keeps the others.
func (m Images) Runs(pod *corev1.Pod) bool {
	n := 0
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if _, ok := m.Lookup(c.Image); !ok {
			return false
		}
		n++
	}
	return n > 0
}

// Repositories lists the known repositories, sorted.
func (m Images) Repositories() []string {
	out := make([]string, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

var repositoryPattern = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*((:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)?$`)

// ParseImage reads "REPOSITORY=BINARY[:ENTRYPOINT]" (a --lab-image
// value); the entrypoint defaults to /usr/local/bin/ and the binary's base
// name.
func ParseImage(s string) (Image, error) {
	repo, rest, ok := strings.Cut(s, "=")
	if !ok || repo == "" || rest == "" {
		return Image{}, fmt.Errorf("%q: want REPOSITORY=BINARY[:ENTRYPOINT]", s)
	}
	bin, entry, _ := strings.Cut(rest, ":")
	if !strings.HasPrefix(bin, "/") || strings.HasSuffix(bin, "/") {
		return Image{}, fmt.Errorf("%q: the binary %q must be a file's absolute path", s, bin)
	}
	if entry == "" {
		entry = "/usr/local/bin/" + bin[strings.LastIndex(bin, "/")+1:]
	}
	if !strings.HasPrefix(entry, "/") || strings.HasSuffix(entry, "/") {
		return Image{}, fmt.Errorf("%q: the entrypoint %q must be a file's absolute path", s, entry)
	}
	r := Repository(repo)
	if !repositoryPattern.MatchString(r) {
		return Image{}, fmt.Errorf("%q: %q is not an image repository", s, repo)
	}
	return Image{Repository: r, Binary: bin, Entrypoint: entry}, nil
}

// StageExclusion is a KWOK stage selector expression (a jq key, operator
// NotIn, value "true") that is true for the pods this table runs, so that
// KWOK's pod stages leave them to the lab kubelet. It normalises images
// exactly as Repository does.
func (m Images) StageExclusion() string {
	quoted := make([]string, 0, len(m))
	for _, r := range m.Repositories() {
		quoted = append(quoted, strconv.Quote(r))
	}
	return `[(.spec.initContainers // [])[], .spec.containers[] | .image | sub("@.*$"; "") | sub(":[^:/]*$"; "") | sub("^docker\\.io/"; "") | sub("^library/"; "")] | (length > 0 and all(IN(` + strings.Join(quoted, ", ") + `)))`
}
