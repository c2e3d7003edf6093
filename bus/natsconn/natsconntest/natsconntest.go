// Package natsconntest starts real nats-servers that require credentials
// or TLS, with certificates and keys generated on the spot, for the tests
// of segd's connection options (package natsconn, the CLI, segd serve).
package natsconntest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// PKI is a CA and certificates it signed, as PEM files in Dir.
type PKI struct {
	Dir string
	// CA is the CA certificate; Server* is a certificate for 127.0.0.1 and
	// localhost; Client* a client certificate (CN "segd-client").
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// Pool holds CA, for server-side verification of client certificates.
	Pool *x509.CertPool
}

// NewPKI generates a CA, a server and a client certificate under a
// temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{Dir: dir, Pool: x509.NewCertPool()}
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "segd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.Pool.AddCert(caCert)
	p.CA = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, hosts bool) (string, string) {
		key := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if hosts {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.ServerCert, p.ServerKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, true)
	p.ClientCert, p.ClientKey = leaf("segd-client", 3, x509.ExtKeyUsageClientAuth, false)
	return p
}

// ServerTLS is a TLS configuration for a server with p's certificate;
// with verifyClients, clients must present a certificate p's CA signed.
func (p *PKI) ServerTLS(t testing.TB, verifyClients bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		cfg.ClientCAs, cfg.ClientAuth = p.Pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// NKeyUser is a user nkey: Public goes in the server's configuration,
// SeedFile is what a client's --nkey names.
type NKeyUser struct {
	Public, SeedFile string
}

// NewNKeyUser generates a user nkey and writes its seed to a file.
func NewNKeyUser(t testing.TB) NKeyUser {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	path := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return NKeyUser{Public: pub, SeedFile: path}
}

// Operator is a decentralized-auth (JWT) setup: an operator, one account
// with JetStream, and a user whose credentials file is Creds.
type Operator struct {
	claims *jwt.OperatorClaims
	// accounts maps public keys to JWTs: the user's account and the
	// system account JetStream needs.
	accounts map[string]string
	system   string
	Creds    string
}

// NewOperator generates an operator, an account with unlimited JetStream
// and a user of it, and writes the user's credentials file.
func NewOperator(t testing.TB) *Operator {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	if _, err := oc.Encode(okp); err != nil {
		t.Fatal(err)
	}
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return &Operator{claims: oc, accounts: map[string]string{apub: ajwt, spub: sjwt}, system: spub, Creds: path}
}

// Configure puts o's operator and account into server options.
func (o *Operator) Configure(t testing.TB, opts *server.Options) {
	t.Helper()
	res := &server.MemAccResolver{}
	for pub, j := range o.accounts {
		if err := res.Store(pub, j); err != nil {
			t.Fatal(err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
	opts.AccountResolver, opts.SystemAccount = res, o.system
}

// Start starts a nats-server with JetStream and opts (Host, Port and
// StoreDir are set here) and returns its client URL; t's cleanup stops it.
func Start(t testing.TB, opts *server.Options) (*server.Server, string) {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns, ns.ClientURL()
}

// Warm connects once as o's user and waits until JetStream answers for its
// account. The server enables an account's JetStream on its first
// connection; a stream created meanwhile can fail to find its directory
// (seen with nats-server v2.15: "could not create storage directory").
func (o *Operator) Warm(t testing.TB, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserCredentials(o.Creds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream for the operator's account: %v", err)
	}
}
