package daemon

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/inferq/inferq/transport/mqtt"
)

// checkListen checks a host:port to listen on.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, e.g. 127.0.0.1:9464: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}

// ToolSession is the mqtt section as a tool's connection (inferq fleet --config): the
// same brokers, credentials and TLS as the daemon's.
func (c Config) ToolSession() mqtt.SessionConfig {
	mc := c.MQTT
	brokers := mc.Brokers
	if mc.Broker == "embedded" {
		brokers = []string{"tcp://" + mc.Embedded.Listen}
	}
	return mqtt.SessionConfig{Brokers: brokers, Username: mc.Username, PasswordFile: mc.PasswordFile,
		TLS: mqtt.TLSConfig{CAFile: mc.TLS.CAFile, CertFile: mc.TLS.CertFile, KeyFile: mc.TLS.KeyFile,
			ServerName: mc.TLS.ServerName, InsecureSkipVerify: mc.TLS.InsecureSkipVerify},
		Timeout: mc.ConnectTimeout}
}
