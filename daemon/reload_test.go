package daemon

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// TestReloadAnswers: a reload returns its outcome: nil once a good new model serves,
// the reason when the new file is refused (the previous model keeps serving), and the
// control API's POST /v1/reload says the same.
func TestReloadAnswers(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.Model.Reload = false // only explicit reloads here
	d, _, _ := startDaemon(t, cfg)
	first := d.eng.Info().SHA256
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A different good model.
	if err := os.WriteFile(cfg.Model.Path, tflitegen.NewClassifierNet(64, 64, 8, 16, 10, 99).Model(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(ctx); err != nil {
		t.Fatalf("reload of a good model: %v", err)
	}
	second := d.eng.Info().SHA256
	if second == first {
		t.Fatal("reload succeeded but the model did not change")
	}
	// A broken one: refused with the reason, the second model keeps serving.
	if err := os.WriteFile(cfg.Model.Path, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := d.Reload(ctx)
	if err == nil {
		t.Fatal("reload of a broken model: no error")
	}
	if d.eng.Info().SHA256 != second {
		t.Fatal("a refused reload changed the model")
	}
	t.Logf("refused: %v", err)
	// Over the control socket, as `inferq reload` and `systemctl reload` use it.
	c := control.NewClient(cfg.ControlSocket)
	resp, cerr := c.Reload(ctx)
	if !errors.Is(cerr, control.ErrRefused) || !strings.Contains(cerr.Error(), strings.SplitN(err.Error(), ":", 2)[0]) {
		t.Fatalf("control reload of the broken model: %v, want the reason (%v)", cerr, err)
	}
	if err := os.WriteFile(cfg.Model.Path, tflitegen.NewClassifierNet(64, 64, 8, 16, 10, 5).Model(), 0o644); err != nil {
		t.Fatal(err)
	}
	if resp, err = c.Reload(ctx); err != nil || resp.SHA256 == "" || resp.SHA256 == second {
		t.Fatalf("control reload of a good model: %+v, %v", resp, err)
	}
}
