package params

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

// Error is malformed input: the file, the field and what is wrong. The
// commands turn it into exit code 2.
type Error struct {
	File  string
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Field + ": " + e.Msg
}

// Network holds a cluster's network parameters, named after the table of
// seed 001 and OpenShift's install-config. Every field is optional; the
// checks skip what is not given.
type Network struct {
	ClusterName    string           `json:"clusterName,omitempty"`
	ClusterNetwork []ClusterNetwork `json:"clusterNetwork,omitempty"`
	ServiceNetwork []string         `json:"serviceNetwork,omitempty"`
	MachineNetwork []string         `json:"machineNetwork,omitempty"`
	APIVIP         string           `json:"apiVIP,omitempty"`
	IngressVIP     string           `json:"ingressVIP,omitempty"`
	// MTU is the overlay (pod network) MTU.
	MTU int `json:"mtu,omitempty"`
	// MachineMTU is the nodes' interface MTU; when omitted, the smallest
	// MTU the agents report is used.
	MachineMTU int `json:"machineMTU,omitempty"`
	// Encapsulation is geneve or vxlan; when omitted, the profile's.
	Encapsulation  string `json:"encapsulation,omitempty"`
	GenevePort     int    `json:"genevePort,omitempty"`
	VXLANPort      int    `json:"vxlanPort,omitempty"`
	InternalSubnet string `json:"internalSubnet,omitempty"`
}

// ClusterNetwork is one pod network block and the prefix each node gets.
type ClusterNetwork struct {
	CIDR       string `json:"cidr"`
	HostPrefix int    `json:"hostPrefix"`
}

// ReadNetwork reads and parses a network parameters file.
func ReadNetwork(file string) (*Network, error) {
	b, err := os.ReadFile(file) //nolint:gosec // the user names the file
	if err != nil {
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return ParseNetwork(file, b)
}

// ParseNetwork parses network parameters: strict YAML (unknown fields are
// errors), CIDRs and addresses well formed, encapsulation known.
func ParseNetwork(file string, b []byte) (*Network, error) {
	var n Network
	if err := strict(b, &n); err != nil {
		return nil, yamlError(file, err)
	}
	for i, c := range n.ClusterNetwork {
		if err := cidr(file, fmt.Sprintf("clusterNetwork[%d].cidr", i), c.CIDR); err != nil {
			return nil, err
		}
	}
	for _, list := range []struct {
		name  string
		cidrs []string
	}{{"serviceNetwork", n.ServiceNetwork}, {"machineNetwork", n.MachineNetwork}} {
		for i, c := range list.cidrs {
			if err := cidr(file, fmt.Sprintf("%s[%d]", list.name, i), c); err != nil {
				return nil, err
			}
		}
	}
	if n.InternalSubnet != "" {
		if err := cidr(file, "internalSubnet", n.InternalSubnet); err != nil {
			return nil, err
		}
	}
	for field, v := range map[string]string{"apiVIP": n.APIVIP, "ingressVIP": n.IngressVIP} {
		if v == "" {
			continue
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return nil, &Error{File: file, Field: field, Msg: fmt.Sprintf("%q is not an IP address", v)}
		}
	}
	switch n.Encapsulation {
	case "", "geneve", "vxlan":
	default:
		return nil, &Error{File: file, Field: "encapsulation", Msg: fmt.Sprintf("%q: want geneve or vxlan", n.Encapsulation)}
	}
	return &n, nil
}

func cidr(file, field, s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return &Error{File: file, Field: field, Msg: fmt.Sprintf("invalid CIDR %q", s)}
	}
	if p != p.Masked() {
		return &Error{File: file, Field: field, Msg: fmt.Sprintf("%q has host bits set; the network is %s", s, p.Masked())}
	}
	return nil
}

// strict unmarshals YAML, refusing unknown fields and trailing documents.
func strict(b []byte, v any) error {
	if strings.TrimSpace(string(b)) == "" {
		return errors.New("the file is empty")
	}
	return yaml.UnmarshalStrict(b, v)
}

// yamlError turns a YAML or JSON decoding error into an Error naming the
// field when the decoder says which.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: while decoding JSON: ", "json: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	field := ""
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		field = strings.Trim(msg[i+len("unknown field "):], `"`)
		msg = "unknown field"
	} else if i := strings.Index(msg, "Go struct field "); i >= 0 {
		// cannot unmarshal X into Go struct field Network.mtu of type int
		rest := msg[i+len("Go struct field "):]
		if j := strings.Index(rest, " "); j > 0 {
			field = rest[:j]
			if k := strings.Index(field, "."); k >= 0 {
				field = field[k+1:]
			}
		}
	}
	return &Error{File: file, Field: field, Msg: msg}
}

// Matrix is a compatibility matrix (seed 004): which controller, agent and
// kernel module versions go together, and on which kernels.
type Matrix struct {
	// Components name the image repository of each part, for example
	// controller: docker.io/tungstenfabric/contrail-controller-config-api.
	Components map[string]string `json:"components"`
	Releases   []Release         `json:"releases"`
}

// Release is one supported combination. Each component's list holds glob
// patterns (path.Match) for its image tag; Kernels are glob patterns for
// the nodes' kernel release.
type Release struct {
	Name     string              `json:"name"`
	Versions map[string][]string `json:"versions"`
	Kernels  []string            `json:"kernels"`
}

// ReadMatrix reads and parses a compatibility matrix file.
func ReadMatrix(file string) (*Matrix, error) {
	b, err := os.ReadFile(file) //nolint:gosec // the user names the file
	if err != nil {
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return ParseMatrix(file, b)
}

// ParseMatrix parses a compatibility matrix: at least one component and
// release, every release names versions only for declared components, and
// every pattern is a valid glob.
func ParseMatrix(file string, b []byte) (*Matrix, error) {
	var m Matrix
	if err := strict(b, &m); err != nil {
		return nil, yamlError(file, err)
	}
	if len(m.Components) == 0 {
		return nil, &Error{File: file, Field: "components", Msg: "at least one component is required"}
	}
	if len(m.Releases) == 0 {
		return nil, &Error{File: file, Field: "releases", Msg: "at least one release is required"}
	}
	for i, r := range m.Releases {
		at := fmt.Sprintf("releases[%d]", i)
		if r.Name == "" {
			return nil, &Error{File: file, Field: at + ".name", Msg: "required"}
		}
		for comp, pats := range r.Versions {
			if _, ok := m.Components[comp]; !ok {
				return nil, &Error{File: file, Field: at + ".versions." + comp, Msg: "not a declared component"}
			}
			for j, p := range pats {
				if _, err := path.Match(p, ""); err != nil {
					return nil, &Error{File: file, Field: fmt.Sprintf("%s.versions.%s[%d]", at, comp, j), Msg: fmt.Sprintf("bad pattern %q", p)}
				}
			}
		}
		for j, p := range r.Kernels {
			if _, err := path.Match(p, ""); err != nil {
				return nil, &Error{File: file, Field: fmt.Sprintf("%s.kernels[%d]", at, j), Msg: fmt.Sprintf("bad pattern %q", p)}
			}
		}
	}
	return &m, nil
}

// Match reports whether any pattern matches s.
func Match(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
