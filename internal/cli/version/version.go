package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/hitless-dev/hitless/internal/cli/output"
	"github.com/hitless-dev/hitless/internal/localcluster/binaries"
)

// Info is what `hitless version` reports.
type Info struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
	// LocalCluster lists the pinned versions a local cluster runs.
	LocalCluster map[string]string `json:"localCluster"`
}

// Get reads the version from the binary's build information.
func Get() Info {
	info := Info{
		Version:  "(devel)",
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		LocalCluster: map[string]string{
			"kubernetes": binaries.KubernetesVersion,
			"etcd":       binaries.EtcdVersion,
			"kwok":       binaries.KwokVersion,
		},
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Revision = s.Value
			}
		}
	}
	return info
}

// NewCommand returns the `version` command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of hitless and of the local cluster's components",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			info := Get()
			return output.Print(streams.Out, format, info, func(w io.Writer) error {
				_, _ = fmt.Fprintf(w, "hitless\t%s\t%s %s\n", info.Version, info.Go, info.Platform)
				if info.Revision != "" {
					_, _ = fmt.Fprintf(w, "revision\t%s\n", info.Revision)
				}
				for _, k := range []string{"kubernetes", "etcd", "kwok"} {
					_, _ = fmt.Fprintf(w, "local cluster %s\t%s\n", k, info.LocalCluster[k])
				}
				return nil
			})
		},
	}
	output.AddFlag(cmd.Flags(), &format)
	return cmd
}
