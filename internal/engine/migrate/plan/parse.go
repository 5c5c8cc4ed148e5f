package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxSize bounds a plan document.
const MaxSize = 1 << 20

// rawPlan is a plan with its steps and gates still undecoded, so that an
// error in one names it.
type rawPlan struct {
	APIVersion  string            `json:"apiVersion"`
	Kind        string            `json:"kind"`
	Metadata    Metadata          `json:"metadata"`
	Profile     string            `json:"profile,omitempty"`
	NetworkType string            `json:"networkType,omitempty"`
	Network     map[string]any    `json:"network,omitempty"`
	Parameters  []json.RawMessage `json:"parameters,omitempty"`
	Gates       []json.RawMessage `json:"gates,omitempty"`
	Steps       []json.RawMessage `json:"steps"`
}

// Parse reads a plan document (YAML or JSON) and checks what can be
// checked without a cluster or parameter values: the structure, step
// types, names, references to parameters and the syntax of every CEL
// expression. Its errors are *Error.
func Parse(file string, data []byte) (*Plan, error) {
	fail := func(step, field, format string, args ...any) error {
		return &Error{File: file, Step: step, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxSize {
		return nil, fail("", "", "%d bytes: a plan is at most %d", len(data), MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail("", "", "the file is empty")
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fail("", "", "not valid YAML: %v", err)
	}
	var raw rawPlan
	if err := strict(js, &raw); err != nil {
		f, msg := fieldOf(err, false)
		return nil, fail("", f, "%s", msg)
	}
	p := &Plan{APIVersion: raw.APIVersion, Kind: raw.Kind, Metadata: raw.Metadata, Profile: raw.Profile, NetworkType: raw.NetworkType, Network: raw.Network}
	for i, r := range raw.Parameters {
		var par Parameter
		if err := strict(r, &par); err != nil {
			f, msg := fieldOf(err, false)
			return nil, fail("", fmt.Sprintf("parameters[%d].%s", i, f), "%s", msg)
		}
		p.Parameters = append(p.Parameters, par)
	}
	for i, r := range raw.Gates {
		var g Gate
		if err := strict(r, &g); err != nil {
			f, msg := fieldOf(err, false)
			return nil, fail("", fmt.Sprintf("gates[%d].%s", i, f), "%s", msg)
		}
		p.Gates = append(p.Gates, g)
	}
	for i, r := range raw.Steps {
		s, err := decodeStep(r)
		if err != nil {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			f, msg := fieldOf(err, true)
			return nil, fail(name, f, "%s", msg)
		}
		p.Steps = append(p.Steps, s)
	}
	if err := p.validate(); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			pe.File = file
		}
		return nil, err
	}
	return p, nil
}

// decodeStep decodes one step; the name is read first so that an error
// names the step.
func decodeStep(r json.RawMessage) (Step, error) {
	var named struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(r, &named)
	var s Step
	if err := strict(r, &s); err != nil {
		return Step{Name: named.Name}, err
	}
	return s, nil
}

// strict decodes data into v, refusing unknown and duplicate fields
// with their full path, as the API server's strict field validation does.
func strict(data []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return strictErrs[0]
	}
	return nil
}

var (
	unknownField   = regexp.MustCompile(`unknown field "([^"]*)"`)
	duplicateField = regexp.MustCompile(`duplicate field "([^"]*)"`)
)

// fieldOf turns a decoding error into the field it is about and a
// message a person reads.
func fieldOf(err error, inStep bool) (string, string) {
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		if inStep && !strings.Contains(m[1], ".") {
			return m[1], fmt.Sprintf("unknown field or step type (step types: %s)", strings.Join(StepTypes(), ", "))
		}
		return m[1], "unknown field"
	}
	if m := duplicateField.FindStringSubmatch(err.Error()); m != nil {
		return m[1], "given twice"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := strings.ReplaceAll(te.Field, "Action.", "")
		return field, fmt.Sprintf("got a %s, want %s", te.Value, goTypeName(te.Type.String()))
	}
	return "", err.Error()
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "an object"
}
