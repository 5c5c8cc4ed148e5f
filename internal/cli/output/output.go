package output

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Format is the value of -o.
type Format string

// The formats.
const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
)

var _ pflag.Value = (*Format)(nil)

// String implements pflag.Value.
func (f *Format) String() string {
	if *f == "" {
		return string(Table)
	}
	return string(*f)
}

// Set implements pflag.Value; an unknown format is a flag error (exit 2).
func (f *Format) Set(s string) error {
	switch Format(strings.ToLower(s)) {
	case Table, "wide", "":
		*f = Table
	case JSON:
		*f = JSON
	case YAML:
		*f = YAML
	default:
		return fmt.Errorf("unknown output format %q: want table, json or yaml", s)
	}
	return nil
}

// Type implements pflag.Value.
func (f *Format) Type() string { return "format" }

// AddFlag registers -o/--output on fs.
func AddFlag(fs *pflag.FlagSet, f *Format) {
	if *f == "" {
		*f = Table
	}
	fs.VarP(f, "output", "o", "Output format: table, json or yaml")
}

// Print writes v in format f; table is called for the table format and
// receives a tab writer whose columns it separates with tabs.
func Print(w io.Writer, f Format, v any, table func(w io.Writer) error) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
		_, err = w.Write(b)
		return err
	default:
		tw := printers.GetNewTabWriter(w)
		if err := table(tw); err != nil {
			return err
		}
		return tw.Flush()
	}
}

// IsTerminal reports whether w is a terminal, for colour.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
