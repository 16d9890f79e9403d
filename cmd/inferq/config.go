package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/daemon"
)

// runConfig is `inferq config check|print|defaults`.
func runConfig(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: config check|print|defaults [--config FILE]", errUsage)
	}
	op := args[0]
	fs := flag.NewFlagSet("config "+op, flag.ContinueOnError)
	path := fs.String("config", defaultConfigPath, "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	var cfg daemon.Config
	switch op {
	case "defaults":
		cfg = daemon.DefaultConfig()
	case "check", "print":
		c, err := daemon.LoadConfig(*path)
		if err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("invalid config %s:\n%w", *path, err)
		}
		cfg = c
		if op == "check" {
			if _, err := os.Stat(c.Model.Path); err != nil {
				// Not an error: the daemon starts, queues input and loads the model when it appears.
				fmt.Fprintf(stdout, "%s: warning: model.path %q: %v; inferq will start, queue input and wait for it\n", *path, c.Model.Path, err)
			}
			fmt.Fprintf(stdout, "%s: ok\n", *path)
			return nil
		}
	default:
		return fmt.Errorf("%w: config %q: want check, print or defaults", errUsage, op)
	}
	enc := yaml.NewEncoder(stdout)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("cannot encode config: %w", err)
	}
	return enc.Close()
}
