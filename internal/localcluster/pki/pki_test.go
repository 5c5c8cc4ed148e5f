package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

func TestIssuedCertificatesVerifyAgainstTheAuthority(t *testing.T) {
	ca, err := NewAuthority("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tests := []struct {
		name  string
		req   Request
		usage x509.ExtKeyUsage
		host  string
	}{
		{"serving cert for loopback IP", Request{CommonName: "kube-apiserver", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"serving cert for a DNS name", Request{CommonName: "kube-apiserver", DNSNames: []string{"kubernetes.default.svc"}, Server: true}, x509.ExtKeyUsageServerAuth, "kubernetes.default.svc"},
		{"client cert", Request{CommonName: "admin", Organization: []string{"system:masters"}, Client: true}, x509.ExtKeyUsageClientAuth, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: tt.host, KeyUsages: []x509.ExtKeyUsage{tt.usage}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if c.Cert.IsCA {
				t.Error("leaf certificate must not be a CA")
			}
		})
	}
}

func TestWriteProducesAUsableKeyPairWithPrivateModes(t *testing.T) {
	ca, err := NewAuthority("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(Request{CommonName: "x", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := Write(dir, "x", leaf.Cert, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		t.Errorf("written pair does not load: %v", err)
	}
	st, err := os.Stat(f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
}
