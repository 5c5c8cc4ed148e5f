package localcluster

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/hitless-dev/hitless/internal/localcluster/kubelet"
	"github.com/hitless-dev/hitless/internal/localcluster/pki"
)

//go:embed stages.yaml
var stagesYAML string

// Network ranges of a local cluster. Nothing is routed to them: they only
// fill the API objects as a real cluster's would.
const (
	serviceCIDR = "10.96.0.0/16"
	clusterCIDR = "10.128.0.0/9"
	nodeNetwork = "172.30.0.0/16"
	loopback    = "127.0.0.1"
)

// ports are the loopback ports a cluster's components listen on.
type ports struct {
	EtcdClient, EtcdPeer, APIServer, ControllerManager, Scheduler, Kwok int
}

// freePorts reserves distinct free loopback ports. They are released before
// the components bind them; the window for another process to take one is
// small, and a component that fails to bind fails Up with its log.
func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var nums [6]int
	for i := range nums {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return ports{}, fmt.Errorf("reserving a loopback port: %w", err)
		}
		ls = append(ls, l)
		nums[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports{nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]}, nil
}

// files are the paths of the generated certificates and configuration.
type files struct {
	CA, APIServer, Admin, FrontProxy pki.Files
	SAKey, SAPub                     string
	Kubeconfig                       string
	SchedulerConfig                  string
	KwokConfig                       string
	EtcdData                         string
	// AuditPolicy and AuditLog: the API server audits every request a
	// ServiceAccount makes (only those: the rest would swamp it), so
	// tests can prove what an in-cluster identity may and may not do.
	AuditPolicy, AuditLog string
}

// auditPolicy logs the metadata (user, verb, resource, response code) of
// every request made by a ServiceAccount, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
`

// writeFiles generates the PKI, kubeconfig and component configuration under dir.
func writeFiles(dir, name string, p ports, quickTermination bool, images kubelet.Images) (files, error) {
	pkiDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return files{}, fmt.Errorf("creating %s: %w", pkiDir, err)
	}
	ca, err := pki.NewAuthority("hitless-" + name + "-ca")
	if err != nil {
		return files{}, err
	}
	var f files
	if f.CA, err = pki.Write(pkiDir, "ca", ca.Cert, ca.Key); err != nil {
		return files{}, err
	}
	issue := []struct {
		dst *pki.Files
		req pki.Request
	}{
		{&f.APIServer, pki.Request{
			CommonName: "kube-apiserver",
			DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPs:        []net.IP{net.ParseIP(loopback), net.ParseIP("10.96.0.1")},
			Server:     true,
		}},
		{&f.Admin, pki.Request{CommonName: "hitless-admin", Organization: []string{"system:masters"}, Client: true}},
		{&f.FrontProxy, pki.Request{CommonName: "front-proxy-client", Client: true}},
	}
	names := []string{"apiserver", "admin", "front-proxy-client"}
	for i, it := range issue {
		c, err := ca.Issue(it.req)
		if err != nil {
			return files{}, err
		}
		if *it.dst, err = pki.Write(pkiDir, names[i], c.Cert, c.Key); err != nil {
			return files{}, err
		}
	}
	sa, err := pki.NewServiceAccountKey()
	if err != nil {
		return files{}, err
	}
	keyPEM, err := pki.KeyPEM(sa)
	if err != nil {
		return files{}, err
	}
	pubPEM, err := pki.PublicKeyPEM(sa)
	if err != nil {
		return files{}, err
	}
	f.SAKey, f.SAPub = filepath.Join(pkiDir, "sa.key"), filepath.Join(pkiDir, "sa.pub")
	if err := os.WriteFile(f.SAKey, keyPEM, 0o600); err != nil {
		return files{}, fmt.Errorf("writing %s: %w", f.SAKey, err)
	}
	if err := os.WriteFile(f.SAPub, pubPEM, 0o600); err != nil {
		return files{}, fmt.Errorf("writing %s: %w", f.SAPub, err)
	}

	f.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(f.Kubeconfig, name, p.APIServer, f); err != nil {
		return files{}, err
	}
	f.SchedulerConfig = filepath.Join(dir, "scheduler.yaml")
	sched := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
`, f.Kubeconfig)
	if err := os.WriteFile(f.SchedulerConfig, []byte(sched), 0o600); err != nil {
		return files{}, fmt.Errorf("writing %s: %w", f.SchedulerConfig, err)
	}
	f.KwokConfig = filepath.Join(dir, "kwok.yaml")
	kwok := `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 16
  nodePlayStageParallelism: 16
  podPlayStageParallelism: 16
  podsOnNodeSyncParallelism: 4
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
---
` + stages(quickTermination, images)
	if err := os.WriteFile(f.KwokConfig, []byte(kwok), 0o600); err != nil {
		return files{}, fmt.Errorf("writing %s: %w", f.KwokConfig, err)
	}
	f.EtcdData = filepath.Join(dir, "etcd")
	f.AuditPolicy, f.AuditLog = filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(f.AuditPolicy, []byte(auditPolicy), 0o600); err != nil {
		return files{}, fmt.Errorf("writing %s: %w", f.AuditPolicy, err)
	}
	return f, nil
}

// graceDelay is how long the pod-delete stage waits after a pod's
// deletion: its annotation, else its grace period.
const graceDelay = `.metadata.annotations["hitless.dev/termination-delay"] // (((.metadata.deletionGracePeriodSeconds // 0) | tostring) + "s")`

// stages are KWOK's stages; with quickTermination a deleted pod ends at
// once (its annotation still applies) instead of after its grace period.
//
// With a lab kubelet, every pod stage leaves the pods it runs (images
// known to it) alone: their status is their real daemons'.
func stages(quickTermination bool, images kubelet.Images) string {
	s := stagesYAML
	if quickTermination {
		s = strings.Replace(s, graceDelay, `.metadata.annotations["hitless.dev/termination-delay"] // "0s"`, 1)
	}
	if len(images) == 0 {
		return s
	}
	const podSelector = "    kind: Pod\n  selector:\n    matchExpressions:\n"
	exclude := "    - key: '" + strings.ReplaceAll(images.StageExclusion(), "'", "''") + "'\n      operator: 'NotIn'\n      values: ['true']\n"
	return strings.ReplaceAll(s, podSelector, podSelector+exclude)
}

func writeKubeconfig(path, name string, port int, f files) error {
	ctxName := ContextName(name)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{
		Server:               "https://" + net.JoinHostPort(loopback, strconv.Itoa(port)),
		CertificateAuthority: f.CA.Cert,
	}
	cfg.AuthInfos[ctxName] = &clientcmdapi.AuthInfo{
		ClientCertificate: f.Admin.Cert,
		ClientKey:         f.Admin.Key,
	}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName, Namespace: "default"}
	cfg.CurrentContext = ctxName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// ContextName is the kubeconfig context of the named local cluster.
func ContextName(name string) string { return "hitless-" + name }

type component struct {
	name   string
	binary string
	args   []string
}

func components(bins map[string]string, p ports, f files) []component {
	addr := func(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }
	return []component{
		{name: "etcd", binary: bins["etcd"], args: []string{
			"--name=etcd0",
			"--data-dir=" + f.EtcdData,
			"--listen-client-urls=http://" + addr(p.EtcdClient),
			"--advertise-client-urls=http://" + addr(p.EtcdClient),
			"--listen-peer-urls=http://" + addr(p.EtcdPeer),
			"--initial-advertise-peer-urls=http://" + addr(p.EtcdPeer),
			"--initial-cluster=etcd0=http://" + addr(p.EtcdPeer),
			"--listen-metrics-urls=",
			"--quota-backend-bytes=8589934592",
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		}},
		{name: "kube-apiserver", binary: bins["kube-apiserver"], args: []string{
			"--etcd-servers=http://" + addr(p.EtcdClient),
			"--bind-address=" + loopback,
			"--advertise-address=" + loopback,
			"--secure-port=" + strconv.Itoa(p.APIServer),
			"--tls-cert-file=" + f.APIServer.Cert,
			"--tls-private-key-file=" + f.APIServer.Key,
			"--client-ca-file=" + f.CA.Cert,
			"--service-account-key-file=" + f.SAPub,
			"--service-account-signing-key-file=" + f.SAKey,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=" + serviceCIDR,
			"--authorization-mode=RBAC",
			"--allow-privileged=true",
			"--endpoint-reconciler-type=none",
			"--enable-priority-and-fairness=false",
			"--max-requests-inflight=0",
			"--max-mutating-requests-inflight=0",
			"--requestheader-client-ca-file=" + f.CA.Cert,
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + f.FrontProxy.Cert,
			"--proxy-client-key-file=" + f.FrontProxy.Key,
			"--profiling=false",
			"--audit-policy-file=" + f.AuditPolicy,
			"--audit-log-path=" + f.AuditLog,
			"--audit-log-maxsize=200",
			"--audit-log-maxbackup=1",
		}},
		{name: "kube-controller-manager", binary: bins["kube-controller-manager"], args: []string{
			"--kubeconfig=" + f.Kubeconfig,
			"--authentication-kubeconfig=" + f.Kubeconfig,
			"--authorization-kubeconfig=" + f.Kubeconfig,
			"--bind-address=" + loopback,
			"--secure-port=" + strconv.Itoa(p.ControllerManager),
			"--leader-elect=false",
			"--root-ca-file=" + f.CA.Cert,
			"--service-account-private-key-file=" + f.SAKey,
			"--cluster-signing-cert-file=" + f.CA.Cert,
			"--cluster-signing-key-file=" + f.CA.Key,
			"--service-cluster-ip-range=" + serviceCIDR,
			"--allocate-node-cidrs=false",
			"--use-service-account-credentials=false",
			"--kube-api-qps=1000",
			"--kube-api-burst=2000",
			"--concurrent-deployment-syncs=20",
			"--concurrent-replicaset-syncs=20",
			"--concurrent-statefulset-syncs=20",
			"--concurrent-daemonset-syncs=10",
			"--concurrent-gc-syncs=50",
			"--concurrent-namespace-syncs=20",
			"--profiling=false",
		}},
		{name: "kube-scheduler", binary: bins["kube-scheduler"], args: []string{
			"--config=" + f.SchedulerConfig,
			"--authentication-kubeconfig=" + f.Kubeconfig,
			"--authorization-kubeconfig=" + f.Kubeconfig,
			"--bind-address=" + loopback,
			"--secure-port=" + strconv.Itoa(p.Scheduler),
			"--profiling=false",
		}},
		{name: "kwok", binary: bins["kwok"], args: []string{
			"--config=" + f.KwokConfig,
			"--kubeconfig=" + f.Kubeconfig,
			"--manage-all-nodes=true",
			"--server-address=" + addr(p.Kwok),
			"--node-lease-duration-seconds=40",
			"--cidr=10.127.0.0/16",
		}},
	}
}
