package condition

import (
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"google.golang.org/protobuf/types/known/structpb"
)

func nativeOf(t *cel.Type) reflect.Type {
	switch {
	case t.IsExactType(cel.StringType):
		return reflect.TypeFor[string]()
	case t.Kind() == types.MapKind:
		// A map of any JSON values, as a Struct (then a plain map).
		return reflect.TypeFor[*structpb.Struct]()
	}
	return reflect.TypeFor[bool]()
}

// gives tells whether a checked expression's type out fits want: the same
// type, dyn, or for a map, any map with string (or dyn) keys.
func gives(out, want *cel.Type) bool {
	if out.IsExactType(want) || out.IsExactType(cel.DynType) {
		return true
	}
	if want.Kind() != types.MapKind || out.Kind() != types.MapKind {
		return false
	}
	k := out.Parameters()[0]
	return k.IsExactType(cel.StringType) || k.IsExactType(cel.DynType)
}
