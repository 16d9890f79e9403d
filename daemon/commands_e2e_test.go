package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// Remote commands through a real Mosquitto, a real daemon and the real `inferq fleet
// cmd`: a signed command left retained on the broker before the box started is ignored
// (no pause, no reply); one signed with another key is refused, with a reply saying so,
// and the CLI exits 1; a good one pauses the worker and health shows it; a reload of a
// broken model is answered with the daemon's refusal (exit 1), the same words the
// control socket gives.
func TestRemoteCommands(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	bin := buildInferq(t)
	cfg := e2eConfig(t, b, rt)
	cfg.Model.Reload = false // only explicit reloads
	dir := t.TempDir()
	keyFile, wrongKey := filepath.Join(dir, "key"), filepath.Join(dir, "wrong")
	for f, k := range map[string]string{keyFile: "the-fleet-shared-key-0123\n", wrongKey: "not-the-fleets-key-456789\n"} {
		if err := os.WriteFile(f, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key, err := ReadCommandKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Commands.Enabled, cfg.MQTT.Commands.SecretFile = true, keyFile

	// Left on the broker, retained, before the box started: properly signed and fresh.
	left, err := EncodeCommand(CommandRequest{ID: "left-behind", Node: "e2e", Verb: "pause", Time: time.Now().UTC(), What: "worker"}, key)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/e2e/cmd/pause", "-q", "1", "-r", "-m", string(left))
	replies := b.Subscribe(t, "-t", "inferq/e2e/reply/#", "-q", "1")
	d, _, _ := startDaemon(t, cfg)
	testenv.WaitFor(t, "the retained command ignored", 20*time.Second, func() bool { return d.cmds.ignored.Load() == 1 })
	if p := d.Health().Paused; p != nil && p.Worker {
		t.Fatal("a retained command paused the worker")
	}

	fleetCmd := func(args ...string) (string, error) {
		c := exec.Command(bin, append([]string{"fleet", "cmd", "--broker", b.URL(), "--wait", "90s"}, args...)...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		return out.String() + errb.String(), err
	}
	exit1 := func(err error) bool {
		var ee *exec.ExitError
		return errors.As(err, &ee) && ee.ExitCode() == 1
	}

	out, err := fleetCmd("e2e", "pause", "worker", "--secret-file", wrongKey)
	if !exit1(err) || !strings.Contains(out, "refused") || !strings.Contains(out, "bad signature") {
		t.Fatalf("wrong key: %v\n%s", err, out)
	}
	if p := d.Health().Paused; (p != nil && p.Worker) || d.cmds.refused.Load() != 1 {
		t.Fatalf("a refused command acted: paused %+v, refused %d", p, d.cmds.refused.Load())
	}

	out, err = fleetCmd("e2e", "pause", "worker", "--secret-file", keyFile)
	if err != nil || !strings.Contains(out, "e2e: intake running, worker paused") {
		t.Fatalf("pause worker: %v\n%s", err, out)
	}
	h := d.Health()
	if h.Paused == nil || !h.Paused.Worker || h.Paused.Intake || !strings.Contains(strings.Join(h.Problems, ";"), "worker paused") {
		t.Fatalf("health after a remote pause: paused %+v problems %q", h.Paused, h.Problems)
	}
	if out, err = fleetCmd("e2e", "resume", "--secret-file", keyFile); err != nil || !strings.Contains(out, "worker running") {
		t.Fatalf("resume: %v\n%s", err, out)
	}

	if err := os.WriteFile(cfg.Model.Path, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = fleetCmd("e2e", "reload", "--secret-file", keyFile, "--json")
	if !exit1(err) {
		t.Fatalf("reload of a broken model: %v, want exit status 1\n%s", err, out)
	}
	var r CommandReply
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&r); err != nil {
		t.Fatalf("reply %s: %v", out, err)
	}
	if r.Status != ReplyFailed || r.Class != "refused" || r.Verb != "reload" || r.Error == "" {
		t.Fatalf("reload reply %+v", r)
	}
	ctx := t.Context()
	if local := d.Reload(ctx); local == nil || !strings.HasPrefix(r.Error, strings.SplitN(local.Error(), ":", 2)[0]) {
		t.Errorf("remote refusal %q, local %v", r.Error, local)
	}
	t.Logf("remote reload refused: %s", r.Error)

	// Every reply on the broker belongs to a command sent by the CLI: none for the
	// retained one.
	for {
		line, err := replies.Next(500 * time.Millisecond)
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "inferq/e2e/reply/left-behind") {
			t.Errorf("the retained command was answered: %s", line)
		}
	}
	if n := d.cmds.done.Load(); n != 2 {
		t.Errorf("%d commands done, want 2 (pause, resume)", n)
	}
}
