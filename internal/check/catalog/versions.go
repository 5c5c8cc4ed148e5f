package catalog

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hitless-dev/hitless/internal/check"
	"github.com/hitless-dev/hitless/internal/check/params"
	"github.com/hitless-dev/hitless/internal/component"
)

func versionChecks() []check.Check[*Input] {
	return []check.Check[*Input]{
		check.Func[*Input]{Name: "versions.matrix", Heading: "Running versions and kernels are a supported combination", Fn: matrix},
	}
}

// splitImage returns an image's repository and tag, "latest" for an
// untagged one (what the runtime pulls).
func splitImage(image string) (repo, tag string) {
	repo, tag = component.SplitImage(image)
	if tag == "" {
		tag = "latest"
	}
	return repo, tag
}

func matrix(_ context.Context, in *Input) check.Outcome {
	m := in.Matrix
	if m == nil {
		return check.Skipped("no compatibility matrix (--matrix FILE)")
	}
	if err := in.Snap.Err("pods", "nodes"); err != nil {
		return check.Errored(err)
	}
	byRepo := map[string]string{}
	for comp, repo := range m.Components {
		byRepo[repo] = comp
	}
	running := map[string][]string{} // component -> tags
	where := map[string][]string{}   // component -> pods
	for i := range in.Snap.Pods {
		p := &in.Snap.Pods[i]
		if !active(p) {
			continue
		}
		for _, c := range append(append(p.Spec.InitContainers[:0:0], p.Spec.InitContainers...), p.Spec.Containers...) {
			repo, tag := splitImage(c.Image)
			if comp, ok := byRepo[repo]; ok {
				if !slices.Contains(running[comp], tag) {
					running[comp] = append(running[comp], tag)
				}
				where[comp] = append(where[comp], podRef(p))
			}
		}
	}
	if len(running) == 0 {
		return check.Skipped("none of the matrix's components (%s) runs in the cluster", strings.Join(slices.Sorted(maps.Keys(m.Components)), ", "))
	}
	var found []string
	for _, comp := range slices.Sorted(maps.Keys(running)) {
		slices.Sort(running[comp])
		found = append(found, comp+" "+strings.Join(running[comp], ","))
	}
	var release *params.Release
	for i := range m.Releases {
		r := &m.Releases[i]
		ok := true
		for comp, tags := range running {
			for _, t := range tags {
				if !params.Match(r.Versions[comp], t) {
					ok = false
				}
			}
		}
		if ok {
			release = r
			break
		}
	}
	if release == nil {
		var objs []string
		for _, ps := range where {
			objs = append(objs, ps...)
		}
		return check.Outcome{Status: check.Fail,
			Message:     fmt.Sprintf("no release in the matrix supports the running combination %s", strings.Join(found, "; ")),
			Objects:     dedupe(objs),
			Remediation: "bring the components to one supported release (controller first, then agents and kernel modules node by node)"}
	}
	if len(release.Kernels) > 0 {
		var bad, kernels []string
		for i := range in.Snap.Nodes {
			n := &in.Snap.Nodes[i]
			if !params.Match(release.Kernels, n.Status.NodeInfo.KernelVersion) {
				bad = append(bad, nodeRef(n.Name))
				kernels = append(kernels, n.Name+": "+n.Status.NodeInfo.KernelVersion)
			}
		}
		if len(bad) > 0 {
			return check.Outcome{Status: check.Fail,
				Message:     fmt.Sprintf("release %s (%s) does not support the kernel of %d node(s) (%s); supported: %s", release.Name, strings.Join(found, "; "), len(bad), summarize(kernels), strings.Join(release.Kernels, ", ")),
				Objects:     bad,
				Remediation: "move these nodes to a supported kernel before upgrading the kernel module"}
		}
	}
	return check.Passed("release %s: %s on supported kernels", release.Name, strings.Join(found, "; "))
}
