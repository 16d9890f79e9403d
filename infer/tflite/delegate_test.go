package tflite_test

import (
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// fakeDelegateC is a TFLite external delegate plugin in the shape accelerators ship:
// MODE 0 refuses to start (as libedgetpu does without a device: create returns NULL),
// MODE 1 starts but fails to prepare the graph.
const fakeDelegateC = `
#include <stddef.h>
#include <stdint.h>
typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;
static int fail_prepare(void* context, TfLiteDelegate* d) { return 1; }
static TfLiteDelegate delegate = { NULL, fail_prepare, NULL, NULL, NULL, 0, NULL };
TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report)(const char*)) {
  if (MODE == 0) {
    if (report) report("fake: no accelerator found");
    return NULL;
  }
  return &delegate;
}
void tflite_plugin_destroy_delegate(TfLiteDelegate* d) {}
`

func buildFakeDelegate(t *testing.T, mode string) string {
	t.Helper()
	return buildSharedC(t, "the fake delegate", fakeDelegateC, "libfakedelegate"+mode+".so", "MODE="+mode)
}

// TestDelegateRefusesOrFails covers delegates that load but cannot be used: the
// interpreter must fall back to the CPU, say why, and run.
func TestDelegateRefusesOrFails(t *testing.T) {
	lib := openLib(t)
	tests := []struct {
		name, mode, want string
	}{
		{"create returns NULL", "0", "refused to start (no device, or bad options []): fake: no accelerator found"},
		{"prepare fails", "1", "cannot apply delegate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := buildFakeDelegate(t, tc.mode)
			m, err := lib.NewModel(tflitegen.Tiny())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			it, err := lib.NewInterpreter(m, tflite.Options{Delegate: path})
			if err != nil {
				t.Fatalf("got %v, want a CPU fallback", err)
			}
			defer it.Close()
			if it.UsesDelegate() || it.DelegateError() == nil || !strings.Contains(it.DelegateError().Error(), tc.want) {
				t.Fatalf("UsesDelegate %v DelegateError %v, want a fallback saying %q", it.UsesDelegate(), it.DelegateError(), tc.want)
			}
			if err := it.Invoke(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
