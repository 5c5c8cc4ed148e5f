package params

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetwork(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string // "" with wantMsg "" means no error
		wantMsg   string
	}{
		{name: "full", in: `
clusterName: prod-1
clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 23}]
serviceNetwork: [172.30.0.0/16]
machineNetwork: [192.168.10.0/24]
apiVIP: 192.168.10.5
ingressVIP: 192.168.10.6
mtu: 1400
genevePort: 6081
internalSubnet: 100.64.0.0/16
encapsulation: geneve
`},
		{name: "invalid yaml", in: "clusterNetwork: [", wantMsg: "did not find expected"},
		{name: "unknown field", in: "clusterNetwrk: []\n", wantField: "clusterNetwrk", wantMsg: "unknown field"},
		{name: "wrong type", in: "mtu: large\n", wantField: "mtu", wantMsg: "cannot unmarshal"},
		{name: "invalid cluster CIDR", in: "clusterNetwork: [{cidr: 10.128.0.0/33, hostPrefix: 23}]\n", wantField: "clusterNetwork[0].cidr", wantMsg: "invalid CIDR"},
		{name: "host bits set", in: "serviceNetwork: [172.30.0.1/16]\n", wantField: "serviceNetwork[0]", wantMsg: "host bits set"},
		{name: "invalid machine CIDR", in: "machineNetwork: [192.168.10.0/24, nonsense]\n", wantField: "machineNetwork[1]", wantMsg: "invalid CIDR"},
		{name: "invalid VIP", in: "apiVIP: 300.1.1.1\n", wantField: "apiVIP", wantMsg: "not an IP address"},
		{name: "unknown encapsulation", in: "encapsulation: gre\n", wantField: "encapsulation", wantMsg: "want geneve or vxlan"},
		{name: "empty", in: "  \n", wantMsg: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNetwork("params.yaml", []byte(tt.in))
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if n.ClusterNetwork[0].HostPrefix != 23 || n.APIVIP != "192.168.10.5" || n.MTU != 1400 {
					t.Fatalf("parsed %+v", n)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want *params.Error", err, err)
			}
			if pe.File != "params.yaml" || pe.Field != tt.wantField || !strings.Contains(pe.Msg, tt.wantMsg) {
				t.Fatalf("error file %q field %q msg %q; want params.yaml, %q, containing %q", pe.File, pe.Field, pe.Msg, tt.wantField, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "params.yaml: ") {
				t.Fatalf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestReadNetworkMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := ReadNetwork(path)
	var pe *Error
	if !errors.As(err, &pe) || pe.File != path {
		t.Fatalf("error %v, want a params.Error naming %s", err, path)
	}
}

func TestParseMatrix(t *testing.T) {
	good := `
components:
  controller: docker.io/tungstenfabric/contrail-controller-config-api
  agent: docker.io/tungstenfabric/contrail-vrouter-agent
releases:
- name: "2011"
  versions: {controller: ["2011.*"], agent: ["2011.*"]}
  kernels: ["3.10.0-1160.*", "5.4.*"]
`
	m, err := ParseMatrix("matrix.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !Match(m.Releases[0].Versions["agent"], "2011.L3") || Match(m.Releases[0].Kernels, "6.1.0") {
		t.Fatalf("patterns do not match as expected: %+v", m.Releases[0])
	}
	bad := []struct{ name, in, field string }{
		{"no components", "releases: [{name: a}]\n", "components"},
		{"undeclared component", "components: {a: x}\nreleases: [{name: r, versions: {b: ['1']}}]\n", "releases[0].versions.b"},
		{"bad glob", "components: {a: x}\nreleases: [{name: r, versions: {a: ['[']}}]\n", "releases[0].versions.a[0]"},
		{"no release name", "components: {a: x}\nreleases: [{versions: {a: ['1']}}]\n", "releases[0].name"},
		{"unknown field", "components: {a: x}\nreleases: [{name: r, kernel: ['1']}]\n", "kernel"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMatrix("matrix.yaml", []byte(tt.in))
			var pe *Error
			if !errors.As(err, &pe) || pe.Field != tt.field {
				t.Fatalf("error %v, want field %q", err, tt.field)
			}
		})
	}
}

func FuzzParseNetwork(f *testing.F) {
	for _, s := range []string{
		"clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 23}]\nserviceNetwork: [172.30.0.0/16]\n",
		"apiVIP: 192.168.1.1\nmtu: 1400\n", "{}", "- a\n- b\n", "clusterName: x\n---\nmtu: 1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNetwork("fuzz.yaml", b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "fuzz.yaml" {
				t.Fatalf("error %v is not a params.Error naming the file", err)
			}
			return
		}
		if n == nil {
			t.Fatal("nil parameters without an error")
		}
	})
}

func FuzzParseMatrix(f *testing.F) {
	f.Add([]byte("components: {a: x}\nreleases: [{name: r, versions: {a: ['1.*']}, kernels: ['5.*']}]\n"))
	f.Add([]byte("components: {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMatrix("fuzz.yaml", b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a params.Error", err)
			}
			return
		}
		if len(m.Components) == 0 || len(m.Releases) == 0 {
			t.Fatalf("accepted a matrix without components or releases: %+v", m)
		}
	})
}
