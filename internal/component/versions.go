package component

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/hitless-dev/hitless/internal/component/manifest"
)

// Versions are a source's images by version: its release (the tag most of
// its containers run) and every image repository with its tag.
type Versions struct {
	Release string         `json:"release,omitempty"`
	Images  []ImageVersion `json:"images,omitempty"`
}

// ImageVersion is one image repository at one tag, and where it is used.
type ImageVersion struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	// AtRelease is true when the tag is the source's release.
	AtRelease bool     `json:"atRelease"`
	Objects   []string `json:"objects"`
}

func (v ImageVersion) String() string {
	tag := v.Tag
	if tag == "" {
		tag = "(untagged)"
	}
	return v.Repository + " " + tag
}

// ImageVersions lists the source's images: the release first, then the
// other versions, each sorted by repository.
func ImageVersions(src *Source) Versions {
	imgs := Images(src)
	out := Versions{Release: release(imgs)}
	at := map[string]int{}
	for _, img := range imgs {
		repo, tag := SplitImage(img.Image)
		k := repo + ":" + tag
		i, ok := at[k]
		if !ok {
			i = len(out.Images)
			at[k] = i
			out.Images = append(out.Images, ImageVersion{Repository: repo, Tag: tag, AtRelease: tag != "" && tag == out.Release})
		}
		if ref := manifest.Ref(img.Object.Unstructured); !slices.Contains(out.Images[i].Objects, ref) {
			out.Images[i].Objects = append(out.Images[i].Objects, ref)
		}
	}
	slices.SortFunc(out.Images, func(a, b ImageVersion) int {
		if a.AtRelease != b.AtRelease {
			if a.AtRelease {
				return -1
			}
			return 1
		}
		return strings.Compare(a.String(), b.String())
	})
	return out
}

// release is the most common tag among tagged images ("" when none is);
// ties go to the smallest tag, so the answer does not depend on order.
func release(imgs []Image) string {
	count := map[string]int{}
	for _, img := range imgs {
		if img.Tag != "" {
			count[img.Tag]++
		}
	}
	best := ""
	for t, n := range count {
		if n > count[best] || (n == count[best] && t < best) {
			best = t
		}
	}
	return best
}

// project is an image repository's registry and path without its last
// element: quay.io/cilium for quay.io/cilium/operator-generic.
func project(repo string) string {
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		return repo[:i]
	}
	return ""
}

// line is a tag's major.minor, "" when the tag is no version.
func line(tag string) string {
	v, err := version.ParseGeneric(tag)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d", v.Major(), v.Minor())
}

// releases checks the source's images against its release. Real
// releases bundle images of other projects at their own versions (a CNI
// plugins installer, an envoy, an init helper), so by default only what
// cannot be one release is refused: one repository at two tags, and an
// image of the release's own project on the release's version line
// (v3.28.0 beside v3.28.1) that is not at the release, an image left
// behind. oneRelease (seed 000: every manifest refers to the same
// software version) refuses every image not at the release. Untagged
// images carry no version and are left to the caller to report.
func releases(src *Source, oneRelease bool) []Problem {
	imgs := Images(src)
	rel := release(imgs)
	var ps []Problem
	if oneRelease {
		for _, img := range imgs {
			if img.Tag != "" && img.Tag != rel {
				ps = append(ps, problem(img.Object, img.Field, "image %s is at %s, the other images at %s (the profile asks for one release; allow with `allowMixedVersions`)", img.Image, img.Tag, rel))
			}
		}
		return ps
	}
	// Each repository's version: the release when one of its images is at
	// it, else its most common tag.
	byRepo := map[string][]Image{}
	projects := map[string]bool{}
	for _, img := range imgs {
		if img.Tag == "" {
			continue
		}
		repo, _ := SplitImage(img.Image)
		byRepo[repo] = append(byRepo[repo], img)
		if img.Tag == rel {
			projects[project(repo)] = true
		}
	}
	want := map[string]Image{}
	for repo, list := range byRepo {
		tag := release(list)
		if slices.ContainsFunc(list, func(i Image) bool { return i.Tag == rel }) {
			tag = rel
		}
		want[repo] = list[slices.IndexFunc(list, func(i Image) bool { return i.Tag == tag })]
	}
	relLine := line(rel)
	for _, img := range imgs {
		if img.Tag == "" {
			continue
		}
		repo, _ := SplitImage(img.Image)
		if w := want[repo]; w.Tag != img.Tag {
			ps = append(ps, problem(img.Object, img.Field, "image %s is at %s, and at %s in %s (%s): one repository, two versions (allow with `allowMixedVersions`)",
				repo, img.Tag, w.Tag, manifest.Ref(w.Object.Unstructured), w.Field))
			continue
		}
		if img.Tag != rel && relLine != "" && projects[project(repo)] && line(img.Tag) == relLine {
			ps = append(ps, problem(img.Object, img.Field, "image %s is at %s, the release at %s: an image of the release's own project (%s) and version line (%s) left behind (allow with `allowMixedVersions`)",
				img.Image, img.Tag, rel, project(repo), relLine))
		}
	}
	return ps
}
