package condition

import (
	"reflect"

	"github.com/google/cel-go/cel"
)

func nativeOf(t *cel.Type) reflect.Type {
	if t.IsExactType(cel.StringType) {
		return reflect.TypeFor[string]()
	}
	return reflect.TypeFor[bool]()
}
