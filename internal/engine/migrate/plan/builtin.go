package plan

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtin returns the built-in plan name.
func Builtin(name string) (*Plan, error) {
	b, err := builtinFS.ReadFile(path.Join("builtin", name+".yaml"))
	if err != nil {
		return nil, &Error{Field: "plan", Msg: fmt.Sprintf("%q is no built-in plan (built-in: %s)", name, strings.Join(BuiltinNames(), ", "))}
	}
	return Parse("builtin:"+name, b)
}

// BuiltinNames lists the built-in plans.
func BuiltinNames() []string {
	entries, err := builtinFS.ReadDir("builtin")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(out)
	return out
}
