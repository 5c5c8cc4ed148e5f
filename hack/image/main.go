// Command image writes hitless's container image as an OCI image layout
// archive (hack/image.sh builds the binary and calls it).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/hitless-dev/hitless/internal/image"
)

func main() { os.Exit(run()) }

func run() int {
	var opts image.Options
	var out, ref, revision, version string
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&opts.Binary, "binary", "", "the static hitless binary")
	fs.StringVar(&opts.Arch, "arch", runtime.GOARCH, "the binary's GOARCH")
	fs.StringVar(&out, "out", "", "the archive to write")
	fs.StringVar(&ref, "ref", "ghcr.io/hitless-dev/hitless:dev", "the image's name in the archive")
	fs.StringVar(&revision, "revision", "", "the source revision, as a label")
	fs.StringVar(&version, "version", "", "the version, as a label")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if opts.Binary == "" || out == "" {
		fmt.Fprintln(os.Stderr, "image: --binary and --out are required")
		return 2
	}
	opts.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/hitless-dev/hitless"}
	if revision != "" {
		opts.Labels["org.opencontainers.image.revision"] = revision
	}
	if version != "" {
		opts.Labels["org.opencontainers.image.version"] = version
	}
	img, err := image.Build(opts)
	if err == nil {
		err = image.WriteArchive(out, img, ref)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		return 1
	}
	d, err := img.Digest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		return 1
	}
	fmt.Printf("%s %s@%s\n", out, ref, d)
	return 0
}
