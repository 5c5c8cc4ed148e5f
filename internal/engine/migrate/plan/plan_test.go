package plan

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const minimal = `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: small}
parameters:
- {name: port, type: int, validation: "!has(params.port) || params.port != 4789"}
- {name: mode, default: fast}
steps:
- name: patch-it
  patch:
    object: {apiVersion: v1, kind: ConfigMap, namespace: default, name: cfg}
    patch: {data: {port: "${port}", mode: "${mode}", text: "port ${mode}"}}
`

func TestBuiltinsParse(t *testing.T) {
	names := BuiltinNames()
	if len(names) == 0 {
		t.Fatal("no built-in plans")
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			p, err := Builtin(n)
			if err != nil {
				t.Fatal(err)
			}
			if p.Metadata.Name != n {
				t.Errorf("plan in %s.yaml is named %q", n, p.Metadata.Name)
			}
			// Required parameters get a value a user could give.
			set := map[string]string{}
			for _, par := range p.Parameters {
				if par.Required {
					set[par.Name] = "x"
				}
			}
			params, err := p.Params(context.Background(), set)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.Render(context.Background(), params); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A list parameter fills a list (comma-separated in --set, empty items
// dropped; unset, its key is left out), and a reference in a map key
// (a node selector's label) is replaced.
func TestRenderListsAndKeys(t *testing.T) {
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: lists}
parameters:
- {name: key, default: example.com/plane}
- {name: files, type: list}
- {name: links, type: list, default: [a, b]}
steps:
- name: l
  label: {nodes: "", labels: {"${key}": "on"}}
- name: r
  roll:
    groups: [{selector: "${key}=on"}]
    actions: [{name: cutover, params: {files: "${files}", links: "${links}"}}]
`
	p, err := Parse("lists.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		set       map[string]string
		labels    string
		actionArg string
	}{
		{name: "defaults", labels: `{"example.com/plane":"on"}`, actionArg: `{"links":["a","b"]}`},
		{name: "set", set: map[string]string{"files": "10-a.conflist, ,20-b.conf", "key": "k", "links": ""},
			labels: `{"k":"on"}`, actionArg: `{"files":["10-a.conflist","20-b.conf"],"links":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params, err := p.Params(context.Background(), tc.set)
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := p.Render(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := json.Marshal(r.Steps[0].Label.Labels); string(got) != tc.labels {
				t.Errorf("labels = %s, want %s", got, tc.labels)
			}
			if got := string(r.Steps[1].Roll.Actions[0].Params); got != tc.actionArg {
				t.Errorf("action params = %s, want %s", got, tc.actionArg)
			}
		})
	}
}

func TestRender(t *testing.T) {
	p, err := Parse("small.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		set     map[string]string
		want    string
		wantErr string
	}{
		{name: "typed value", set: map[string]string{"port": "6081"}, want: `{"data":{"mode":"fast","port":6081,"text":"port fast"}}`},
		{name: "unset optional is left out", want: `{"data":{"mode":"fast","text":"port fast"}}`},
		{name: "validation", set: map[string]string{"port": "4789"}, wantErr: "port: must satisfy"},
		{name: "not an int", set: map[string]string{"port": "x"}, wantErr: `"x": want an integer`},
		{name: "unknown parameter", set: map[string]string{"prot": "1"}, wantErr: `"prot" is no parameter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params, err := p.Params(context.Background(), tc.set)
			if err == nil {
				var r *Plan
				r, _, err = p.Render(context.Background(), params)
				if err == nil {
					got, _ := json.Marshal(r.Steps[0].Patch.Patch)
					if string(got) != tc.want {
						t.Errorf("patch = %s, want %s", got, tc.want)
					}
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNetworkParams(t *testing.T) {
	doc := `apiVersion: hitless.dev/v1alpha1
kind: MigrationPlan
metadata: {name: net}
network: {encapsulation: geneve, mtu: "${mtu}", genevePort: "${port}", internalSubnet: "${subnet}"}
parameters:
- {name: mtu, type: int}
- {name: port, type: int, default: 6081}
- {name: subnet}
steps:
- name: a
  pause: {message: x}
`
	p, err := Parse("net.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		set     map[string]string
		want    string
		wantErr string
	}{
		{name: "unset parameters leave their fields out", want: `{"encapsulation":"geneve","genevePort":6081}`},
		{name: "set", set: map[string]string{"mtu": "1400", "subnet": "100.66.0.0/16"},
			want: `{"mtu":1400,"encapsulation":"geneve","genevePort":6081,"internalSubnet":"100.66.0.0/16"}`},
		{name: "a value the checks cannot read", set: map[string]string{"subnet": "100.66.0.1/16"}, wantErr: `field network.internalSubnet: "100.66.0.1/16" has host bits set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params, err := p.Params(context.Background(), tc.set)
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := p.Render(context.Background(), params)
			if err == nil {
				var n any
				if n, err = r.NetworkParams(); err == nil {
					if got, _ := json.Marshal(n); string(got) != tc.want {
						t.Errorf("network = %s, want %s", got, tc.want)
					}
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	head := "apiVersion: hitless.dev/v1alpha1\nkind: MigrationPlan\nmetadata: {name: bad}\n"
	wait := "  wait: {for: {apiVersion: v1, kind: Node}, condition: \"true\"}\n"
	tests := []struct {
		name string
		doc  string
		step string
		want string
	}{
		{name: "invalid YAML", doc: "a: [", want: "not valid YAML"},
		{name: "empty", doc: "", want: "empty"},
		{name: "wrong apiVersion", doc: "apiVersion: v1\nkind: MigrationPlan\nmetadata: {name: x}\nsteps: []", want: "field apiVersion"},
		{name: "no steps", doc: head + "steps: []", want: "field steps: a plan has at least one step"},
		{name: "unknown step type", doc: head + "steps:\n- name: r\n  reboot: {}\n", step: "r", want: "field reboot: unknown field or step type"},
		{name: "unknown nested field", doc: head + "steps:\n- name: p\n  patch: {objet: {}}\n", step: "p", want: "field patch.objet: unknown field"},
		{name: "two actions", doc: head + "steps:\n- name: two\n  pause: {message: hi}\n" + wait, step: "two", want: "one action per step"},
		{name: "no action", doc: head + "steps:\n- name: none\n", step: "none", want: "no action"},
		{name: "CEL syntax", doc: head + "steps:\n- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"object.x ==\"}\n", step: "w", want: "field wait.condition"},
		{name: "CEL not bool", doc: head + "steps:\n- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"'x'\"}\n", step: "w", want: "want bool"},
		{name: "missing parameter", doc: head + "steps:\n- name: p\n  pause: {message: \"${nope}\"}\n", step: "p", want: "${nope} names no parameter"},
		{name: "bad duration", doc: head + "steps:\n- name: w\n  wait: {for: {apiVersion: v1, kind: Node}, condition: \"true\", timeout: soon}\n", step: "w", want: "field wait.timeout"},
		{name: "bad patch type", doc: head + "steps:\n- name: p\n  patch: {object: {apiVersion: v1, kind: ConfigMap, name: x}, type: strategic, patch: {}}\n", step: "p", want: "field patch.type"},
		{name: "patch without name", doc: head + "steps:\n- name: p\n  patch: {object: {apiVersion: v1, kind: ConfigMap}, patch: {}}\n", step: "p", want: "field patch.object.name"},
		{name: "duplicate step", doc: head + "steps:\n- name: a\n  pause: {message: one}\n- name: a\n  pause: {message: two}\n", step: "a", want: "two steps"},
		{name: "bad rollback", doc: head + "steps:\n- name: a\n  pause: {message: x}\n  rollback: {}\n", step: "a", want: "field rollback"},
		{name: "wrong type", doc: head + "steps:\n- name: a\n  roll: {groups: [{selector: x}], maxFailures: many}\n", step: "a", want: "field roll.maxFailures"},
		{name: "unknown profile", doc: head + "steps:\n- name: c\n  check: {profile: nope, kind: preflight}\n", step: "c", want: "field check.profile"},
		{name: "unknown network field", doc: head + "network: {mtuu: 1400}\nsteps:\n- name: a\n  pause: {message: x}\n", want: "bad.yaml: field network.mtuu: unknown field"},
		{name: "bad network value", doc: head + "network: {internalSubnet: 100.64.0.1/16}\nsteps:\n- name: a\n  pause: {message: x}\n", want: "field network.internalSubnet: \"100.64.0.1/16\" has host bits set"},
		{name: "label without labels", doc: head + "steps:\n- name: l\n  label: {nodes: a=b}\n", step: "l", want: "field label.labels"},
		{name: "bad label selector", doc: head + "steps:\n- name: l\n  label: {nodes: \"a in (b\", labels: {x: z}}\n", step: "l", want: "field label.nodes"},
		{name: "bad node selector", doc: head + "steps:\n- name: c\n  component: {name: c, action: install, source: s, nodeSelector: {\"a b\": x}}\n", step: "c", want: "field component.nodeSelector"},
		{name: "list default not a list", doc: head + "parameters:\n- {name: l, type: list, default: 3}\nsteps:\n- name: a\n  pause: {message: x}\n", want: "field parameters[0].default"},
		{name: "sync without mappings", doc: head + "steps:\n- name: s\n  sync: {}\n", step: "s", want: "field sync.objects: map at least one kind"},
		{name: "bad sync mode", doc: head + "steps:\n- name: s\n  sync: {mode: live, objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}}]}\n", step: "s", want: "field sync.mode"},
		{name: "sync target selected", doc: head + "steps:\n- name: s\n  sync: {objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap, selector: a=b}}]}\n", step: "s", want: "field sync.objects[0].to.selector"},
		{name: "many sources to one name", doc: head + "steps:\n- name: s\n  sync: {objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap, name: one}}]}\n", step: "s", want: "field sync.objects[0].to.name"},
		{name: "transform not a map", doc: head + "steps:\n- name: s\n  sync: {objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}, transform: \"'x'\"}]}\n", step: "s", want: "field sync.objects[0].transform"},
		{name: "interval on a once", doc: head + "steps:\n- name: s\n  sync: {interval: 1s, objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}}]}\n", step: "s", want: "field sync.interval"},
		{name: "run-sync never stopped", doc: head + "steps:\n- name: s\n  sync: {mode: start, objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}}]}\n", step: "s", want: "is never stopped"},
		{name: "stop without start", doc: head + "steps:\n- name: s\n  sync: {mode: stop, name: cfg}\n", step: "s", want: "no step before this one starts run-sync \"cfg\""},
		{name: "stop with mappings", doc: head + "steps:\n- name: s\n  sync: {mode: stop, objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}}]}\n", step: "s", want: "a stop runs its start's mappings"},
		{name: "run-sync in a rollback", doc: head + "steps:\n- name: s\n  pause: {message: x}\n  rollback: {sync: {mode: start, objects: [{from: {apiVersion: v1, kind: ConfigMap}, to: {apiVersion: v1, kind: ConfigMap}}]}}\n", step: "s", want: "field rollback.sync.mode: a rollback syncs once"},
		{name: "network names no parameter", doc: head + "network: {mtu: \"${mtu}\"}\nsteps:\n- name: a\n  pause: {message: x}\n", want: "field network: ${mtu} names no parameter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.doc))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *plan.Error", err)
			}
			if pe.File != "bad.yaml" || pe.Step != tc.step {
				t.Errorf("file %q step %q, want bad.yaml and %q", pe.File, pe.Step, tc.step)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, n := range BuiltinNames() {
		b, _ := builtinFS.ReadFile("builtin/" + n + ".yaml")
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		params, err := p.Params(context.Background(), nil)
		if err != nil {
			return
		}
		_, _, _ = p.Render(context.Background(), params)
	})
}
