package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/transport/mqtt"
)

// errCommandNotDone: the box refused the command or it failed there; main exits 1.
var errCommandNotDone = errors.New("remote command not done")

const fleetCmdUsage = "fleet cmd NODE reload | pause|resume [intake|worker|all] | retry|purge ID...|--all"

// runFleetCmd is `inferq fleet cmd NODE VERB [ARG...]`: one remote command, published on
// <prefix>/NODE/cmd/VERB (signed with the shared key when one is given), and its reply,
// awaited on <prefix>/NODE/reply/<id>. Exit 1 when the box refused the command, it
// failed there, or no reply came within --wait.
func runFleetCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fleet cmd", flag.ContinueOnError)
	conn := fleetFlags(fs)
	secret := fs.String("secret-file", "", "shared key of mqtt.commands.secret_file (default: the --config's)")
	wait := fs.Duration("wait", 3*time.Minute, "how long to wait for the reply (a reload answers once the model serves)")
	all := fs.Bool("all", false, "retry or purge every dead job")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	pos, err := parseFlags(fs, args, -1)
	if err != nil {
		return err
	}
	req, err := commandRequest(pos, *all)
	if err != nil {
		return err
	}
	sc, prefix, cfg, err := conn.session()
	if err != nil {
		return err
	}
	var key []byte
	if *secret == "" && *conn.config != "" {
		*secret = cfg.MQTT.Commands.SecretFile
	}
	if *secret != "" {
		if key, err = daemon.ReadCommandKey(*secret); err != nil {
			return err
		}
	}
	payload, err := daemon.EncodeCommand(req, key)
	if err != nil {
		return err
	}
	replies := make(chan mqtt.Message, 1)
	sess, err := mqtt.Dial(ctx, sc, []string{daemon.ReplyTopic(prefix, req.Node, req.ID)}, func(m mqtt.Message) {
		select {
		case replies <- m:
		default:
		}
	})
	if err != nil {
		return err
	}
	defer sess.Close()
	topic := daemon.CommandTopic(prefix, req.Node, req.Verb)
	if err := sess.Publish(ctx, topic, payload, false); err != nil {
		return err
	}
	var m mqtt.Message
	select {
	case m = <-replies:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*wait):
		return fmt.Errorf("%w: no reply from %s within %v (is mqtt.commands.enabled there, and may this account publish to %s?)",
			errCommandNotDone, req.Node, *wait, topic)
	}
	var r daemon.CommandReply
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return fmt.Errorf("cannot read the reply: %w", err)
	}
	if *asJSON {
		if err := writeJSONOut(stdout, r); err != nil {
			return err
		}
	} else {
		printReply(stdout, r)
	}
	if r.Status != daemon.ReplyOK {
		return fmt.Errorf("%w: %s %s on %s: %s", errCommandNotDone, req.Verb, r.Status, req.Node, r.Error)
	}
	return nil
}

// commandRequest builds the request the positional arguments NODE VERB [ARG...] ask for.
func commandRequest(pos []string, all bool) (daemon.CommandRequest, error) {
	if len(pos) < 2 {
		return daemon.CommandRequest{}, fmt.Errorf("%w: %s", errUsage, fleetCmdUsage)
	}
	req := daemon.CommandRequest{ID: daemon.NewCommandID(), Node: pos[0], Verb: pos[1], Time: time.Now().UTC()}
	args := pos[2:]
	if req.Node == "" || strings.ContainsAny(req.Node, "/+#") {
		return req, fmt.Errorf("%w: node %q: must be one MQTT topic level", errUsage, req.Node)
	}
	if !slices.Contains(daemon.CommandVerbs, req.Verb) {
		return req, fmt.Errorf("%w: verb %q: want one of %s", errUsage, req.Verb, strings.Join(daemon.CommandVerbs, ", "))
	}
	switch req.Verb {
	case "reload":
		if len(args) > 0 || all {
			return req, fmt.Errorf("%w: fleet cmd NODE reload takes no arguments", errUsage)
		}
	case "pause", "resume":
		if len(args) > 1 || all {
			return req, fmt.Errorf("%w: fleet cmd NODE %s [intake|worker|all]", errUsage, req.Verb)
		}
		req.What = "all"
		if len(args) == 1 {
			req.What = args[0]
		}
	case "retry", "purge":
		if all == (len(args) > 0) {
			return req, fmt.Errorf("%w: fleet cmd NODE %s: give the ids of dead jobs, or --all", errUsage, req.Verb)
		}
		req.IDs, req.All = args, all
	}
	return req, nil
}

// printReply says what the box answered, in the words of the local commands.
func printReply(w io.Writer, r daemon.CommandReply) {
	if r.Status != daemon.ReplyOK {
		fmt.Fprintf(w, "%s %s on %s: %s\n", r.Verb, r.Status, r.Node, r.Error)
		return
	}
	switch r.Verb {
	case "reload":
		var res control.ReloadResponse
		_ = json.Unmarshal(r.Result, &res)
		fmt.Fprintf(w, "%s reloaded: %s sha256:%.12s\n", r.Node, res.Model, res.SHA256)
		for _, s := range res.RestartNeeded {
			fmt.Fprintf(w, "changed, applies after a restart: %s\n", s)
		}
	case "pause", "resume":
		var st control.PauseState
		_ = json.Unmarshal(r.Result, &st)
		fmt.Fprintf(w, "%s: intake %s, worker %s\n", r.Node, pausedWord(st.Intake), pausedWord(st.Worker))
	case "retry", "purge":
		var res control.DeadResponse
		_ = json.Unmarshal(r.Result, &res)
		fmt.Fprintf(w, "%s %s: %d jobs\n", r.Node, r.Verb, res.Count)
	default:
		fmt.Fprintf(w, "%s %s: ok %s\n", r.Node, r.Verb, r.Result)
	}
}
