package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tflite"
)

// engineWrapperEnv names a command put in front of the engine child's command line, split
// at white space: "qemu-aarch64-static" runs the child of an arm64 build under user-mode
// emulation where binfmt_misc does not hand foreign programs to qemu (an emulated parent's
// exec goes to the host's kernel, which cannot run an arm64 program by itself).
const engineWrapperEnv = "INFERQ_ENGINE_WRAPPER"

// engineCommand returns the engine child's command line (exe and args) and the runtime
// configuration to hand to the supervisor. Without a wrapper both are as given, and the
// supervisor puts a runtime closure's loader in front of the command. With a wrapper the
// loader must come after it (the emulator runs the loader, which runs exe), so the
// command is completed here: wrapper, loader, exe, args, with the closure's library named
// directly and the runtime dir left out for the supervisor.
func engineCommand(exe string, args []string, rt infer.RuntimeConfig) ([]string, infer.RuntimeConfig, error) {
	argv := append([]string{exe}, args...)
	wrapper := strings.Fields(os.Getenv(engineWrapperEnv))
	if len(wrapper) == 0 {
		return argv, rt, nil
	}
	if rt.RuntimeDir != "" {
		r, err := tflite.FindRuntime(rt.RuntimeDir)
		if err != nil {
			return nil, rt, fmt.Errorf("%s: %w", engineWrapperEnv, err)
		}
		argv = r.Command(argv...)
		if rt.Library == "" {
			rt.Library = r.Library
		}
		rt.RuntimeDir = ""
	}
	return append(wrapper, argv...), rt, nil
}
