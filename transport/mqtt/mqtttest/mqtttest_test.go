package mqtttest

import (
	"testing"
	"time"
)

func TestStartRestartRetained(t *testing.T) {
	b := Start(t, Options{})
	b.Publish(t, "-t", "t/retained", "-m", "hello", "-r", "-q", "1")
	b.Restart()
	s := b.Subscribe(t, "-t", "t/retained", "-C", "1")
	s.WaitFor(t, "t/retained hello", 10*time.Second)
}

func TestStartUsersAndTLS(t *testing.T) {
	c := GenerateCerts(t)
	b := Start(t, Options{
		Users: map[string]string{"alice": "secret"},
		TLS:   &TLS{CAFile: c.CAFile, CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile, RequireClientCert: true},
	})
	if !b.Running() {
		t.Fatalf("broker not running")
	}
	b.Publish(t, "-t", "t/x", "-m", "1", "-u", "alice", "-P", "secret")
	b.Stop()
	if b.Running() {
		t.Fatalf("broker still running after Stop")
	}
}
