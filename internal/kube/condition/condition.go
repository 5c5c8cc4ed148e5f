package condition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/openapi"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Variables an expression sees.
const (
	// VarObject is the object the condition is about.
	VarObject = "object"
	// VarParams holds the plan's parameters, by name.
	VarParams = "params"
)

// costLimit bounds one evaluation, as the API server bounds one
// admission expression.
const costLimit = 10_000_000

// Schemas resolves the OpenAPI schema of a kind; the API server's own
// discovery (resolver.ClientDiscoveryResolver) is one.
type Schemas interface {
	ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error)
}

// Compiler compiles expressions about objects of a kind. It is safe for
// concurrent use and caches one environment per kind.
type Compiler struct {
	schemas Schemas

	mu   sync.Mutex
	envs map[schema.GroupVersionKind]*typedEnv
	dyn  *cel.Env
}

type typedEnv struct {
	env     *cel.Env
	checked bool // false: the kind's schema is unknown, the object is dyn
}

// NewCompiler returns a compiler that type-checks against schemas; nil
// schemas checks syntax and functions only.
func NewCompiler(schemas Schemas) *Compiler {
	return &Compiler{schemas: schemas, envs: map[schema.GroupVersionKind]*typedEnv{}}
}

// Program is a compiled expression.
type Program struct {
	// Expr is the expression's text.
	Expr string
	// Checked is true when the object's fields were type-checked against
	// the kind's schema.
	Checked bool
	prg     cel.Program
	output  *cel.Type
}

// CompileError is an expression that does not compile: Msg is CEL's
// report, which points at the offending column.
type CompileError struct {
	Expr string
	Msg  string
}

func (e *CompileError) Error() string { return e.Msg }

// Bool compiles expr, which must give a bool, about objects of gvk (the
// zero gvk: no object, only params).
func (c *Compiler) Bool(gvk schema.GroupVersionKind, expr string) (*Program, error) {
	return c.compile(gvk, expr, cel.BoolType)
}

// String compiles expr, which must give a string (a message about an
// object).
func (c *Compiler) String(gvk schema.GroupVersionKind, expr string) (*Program, error) {
	return c.compile(gvk, expr, cel.StringType)
}

// Map compiles expr, which must give a map with string keys (the fields
// of an object built from another: a translation).
func (c *Compiler) Map(gvk schema.GroupVersionKind, expr string) (*Program, error) {
	return c.compile(gvk, expr, cel.MapType(cel.StringType, cel.DynType))
}

func (c *Compiler) compile(gvk schema.GroupVersionKind, expr string, want *cel.Type) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Expr: expr, Msg: "the expression is empty"}
	}
	te, err := c.env(gvk)
	if err != nil {
		return nil, err
	}
	checked, iss := te.env.Compile(expr)
	if iss.Err() != nil {
		return nil, &CompileError{Expr: expr, Msg: iss.Err().Error()}
	}
	if out := checked.OutputType(); !gives(out, want) {
		return nil, &CompileError{Expr: expr, Msg: fmt.Sprintf("gives %s, want %s", out, want)}
	}
	// The typed AST checks fields; the program runs on the dyn AST, over
	// the object as the API server returns it (unstructured maps).
	dynEnv, err := c.dynEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := dynEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, &CompileError{Expr: expr, Msg: iss.Err().Error()}
	}
	prg, err := dynEnv.Program(ast, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, &CompileError{Expr: expr, Msg: err.Error()}
	}
	return &Program{Expr: expr, Checked: te.checked, prg: prg, output: want}, nil
}

// Eval runs the program over object (nil when the expression is about no
// object) and params. A missing field is an error, which a wait reads as
// "not yet".
func (p *Program) Eval(ctx context.Context, object map[string]any, params map[string]any) (any, error) {
	if params == nil {
		params = map[string]any{}
	}
	vars := map[string]any{VarParams: params}
	if object != nil {
		vars[VarObject] = object
	} else {
		vars[VarObject] = map[string]any{}
	}
	val, _, err := p.prg.ContextEval(ctx, vars)
	if err != nil {
		return nil, err
	}
	out, err := val.ConvertToNative(nativeOf(p.output))
	if s, ok := out.(*structpb.Struct); ok && err == nil {
		return s.AsMap(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("the expression gave %v (%s), want %s", val.Value(), val.Type().TypeName(), p.output)
	}
	return out, nil
}

// True evaluates a bool program.
func (p *Program) True(ctx context.Context, object map[string]any, params map[string]any) (bool, error) {
	v, err := p.Eval(ctx, object, params)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, errors.New("the expression did not give a bool")
	}
	return b, nil
}

func (c *Compiler) env(gvk schema.GroupVersionKind) (*typedEnv, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if te, ok := c.envs[gvk]; ok {
		return te, nil
	}
	var decl *apiservercel.DeclType
	if !gvk.Empty() && c.schemas != nil {
		s, err := c.schemas.ResolveSchema(gvk)
		switch {
		case errors.Is(err, resolver.ErrSchemaNotFound):
		case err != nil:
			return nil, fmt.Errorf("reading the schema of %s: %w", gvk, err)
		default:
			decl = common.SchemaDeclType(&openapi.Schema{Schema: s}, true)
			if decl != nil {
				decl = decl.MaybeAssignTypeName("__hitless_" + strings.NewReplacer(".", "_", "/", "_").Replace(gvk.String()))
			}
		}
	}
	env, err := build(decl)
	if err != nil {
		return nil, err
	}
	te := &typedEnv{env: env, checked: decl != nil}
	c.envs[gvk] = te
	return te, nil
}

func (c *Compiler) dynEnv() (*cel.Env, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dyn == nil {
		env, err := build(nil)
		if err != nil {
			return nil, err
		}
		c.dyn = env
	}
	return c.dyn, nil
}

// build is the API server's base environment (its libraries: lists,
// strings, regex, quantities, IPs, CIDRs...) with object typed by decl,
// or dyn, and params a map.
func build(decl *apiservercel.DeclType) (*cel.Env, error) {
	objType := cel.DynType
	var decls []*apiservercel.DeclType
	if decl != nil {
		objType = decl.CelType()
		decls = append(decls, decl)
	}
	set, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions: []cel.EnvOption{
			cel.Variable(VarObject, objType),
			cel.Variable(VarParams, cel.MapType(cel.StringType, cel.DynType)),
		},
		DeclTypes: decls,
	})
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	env, err := set.Env(environment.StoredExpressions)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return env, nil
}

// Discovery resolves schemas from the API server's OpenAPI v3 documents,
// read once per group version.
func Discovery(d discovery.DiscoveryInterface) Schemas {
	return &resolver.ClientDiscoveryResolver{Discovery: memory.NewMemCacheClient(d)}
}
