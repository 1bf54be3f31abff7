package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdTLS names the files etcd clients authenticate with.
type etcdTLS struct {
	CAFile, CertFile, KeyFile string
}

// embeddedEtcd is a single-member etcd bound to loopback, with mutual TLS.
type embeddedEtcd struct {
	etcd      *embed.Etcd
	clientURL string
	logLevel  zap.AtomicLevel
	verbose   bool
}

// startEtcd starts the embedded etcd in dir and waits until it serves.
func startEtcd(ctx context.Context, dir, name string, clientPort, peerPort int, server, client etcdTLS, verbose bool) (*embeddedEtcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	clientURL := url.URL{Scheme: "https", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peerURL := url.URL{Scheme: "https", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = name + "=" + peerURL.String()
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       server.CertFile,
		KeyFile:        server.KeyFile,
		TrustedCAFile:  server.CAFile,
		ClientCertAuth: true,
	}
	cfg.PeerTLSInfo = cfg.ClientTLSInfo
	// The apiserver compacts etcd itself (every 5 minutes).
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "0"
	level := zap.NewAtomicLevelAt(zap.ErrorLevel)
	if verbose {
		level.SetLevel(zap.InfoLevel)
	}
	logConfig := zap.NewProductionConfig()
	logConfig.Level = level
	logConfig.Encoding = "console"
	logConfig.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	logConfig.DisableStacktrace = !verbose
	logConfig.OutputPaths, logConfig.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	logger, err := logConfig.Build()
	if err != nil {
		return nil, fmt.Errorf("embedded etcd logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger.With(zap.String("from", "etcd")))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready after 60s", dir)
	case <-ctx.Done():
		level.SetLevel(zap.FatalLevel) // stopping while starting is not an error
		e.Close()
		return nil, ctx.Err()
	}
	return &embeddedEtcd{etcd: e, clientURL: clientURL.String(), logLevel: level, verbose: verbose}, nil
}

// close stops etcd cleanly: it finishes in-flight requests and syncs the WAL.
func (e *embeddedEtcd) close() {
	// Closing reports each stopped listener as an error; only say so when verbose.
	if !e.verbose {
		e.logLevel.SetLevel(zap.FatalLevel)
	}
	e.etcd.Close()
}

// checkEtcd connects to endpoints and asks for their status, so that an
// unreachable or misconfigured external etcd is one clear line at start
// rather than an apiserver retrying forever.
func checkEtcd(ctx context.Context, endpoints []string, files etcdTLS) error {
	var tlsConfig *tls.Config
	if files.CAFile != "" || files.CertFile != "" {
		info := transport.TLSInfo{CertFile: files.CertFile, KeyFile: files.KeyFile, TrustedCAFile: files.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return fmt.Errorf("etcd TLS files: %w", err)
		}
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConfig,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd %v: %w", endpoints, err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var lastErr error
	for _, ep := range endpoints {
		if _, err := client.Status(ctx, ep); err != nil {
			lastErr = fmt.Errorf("%s: %w", ep, err)
			continue
		}
		return nil
	}
	return fmt.Errorf("etcd unreachable: %w", lastErr)
}
