//go:build tensorflow

package tensorflow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	tf "github.com/wamuir/graft/tensorflow"

	"github.com/inferq/inferq/infer"
)

// ErrNotBuilt is never returned by this build; it exists so callers compile either way.
var ErrNotBuilt = errors.New("inferq was built without TensorFlow support")

// Open loads the SavedModel at cfg.Path and returns an Engine.
func Open(ctx context.Context, rt infer.RuntimeConfig, cfg infer.ModelConfig, logger *slog.Logger) (infer.Engine, error) {
	sha, err := dirSHA256(cfg.Path)
	if err != nil {
		return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: "cannot read SavedModel " + cfg.Path, Err: err}
	}
	opts := &tf.SessionOptions{Config: threadsConfig(cfg.Threads)}
	m, err := tf.LoadSavedModel(cfg.Path, []string{"serve"}, opts)
	if err != nil {
		return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: "cannot load SavedModel " + cfg.Path, Err: err}
	}
	b, err := newBackend(m)
	if err != nil {
		m.Session.Close()
		return nil, err
	}
	return infer.NewEngine(ctx, b, cfg, sha, logger)
}

// threadsConfig encodes a ConfigProto with intra_op_parallelism_threads (field 2) and
// inter_op_parallelism_threads (field 5) set to n.
func threadsConfig(n int) []byte {
	if n <= 0 {
		return nil
	}
	var b []byte
	for _, field := range []byte{2, 5} {
		b = append(b, field<<3)
		for v := uint64(n); ; v >>= 7 {
			if v < 0x80 {
				b = append(b, byte(v))
				break
			}
			b = append(b, byte(v)|0x80)
		}
	}
	return b
}

type backend struct {
	m       *tf.SavedModel
	input   tf.Output
	inDType tf.DataType
	inShape []int64
	fetches []tf.Output
	ins     []infer.TensorInfo
	outs    []infer.TensorInfo
	buf     [][]byte
}

func newBackend(m *tf.SavedModel) (*backend, error) {
	sig, ok := m.Signatures["serving_default"]
	if !ok {
		return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: "SavedModel has no serving_default signature"}
	}
	if len(sig.Inputs) != 1 {
		return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: fmt.Sprintf("serving_default has %d inputs, want 1 image input", len(sig.Inputs))}
	}
	b := &backend{m: m}
	for key, ti := range sig.Inputs {
		out, err := output(m.Graph, ti.Name)
		if err != nil {
			return nil, err
		}
		shape, err := ti.Shape.ToSlice()
		if err != nil || len(shape) != 4 {
			return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: fmt.Sprintf("input %s has shape %v, want [1,H,W,C]", key, ti.Shape)}
		}
		if shape[0] == -1 {
			shape[0] = 1
		}
		b.input, b.inDType, b.inShape = out, ti.DType, shape
		b.ins = []infer.TensorInfo{{Name: key, Type: typeName(ti.DType), Shape: ints(shape)}}
	}
	keys := make([]string, 0, len(sig.Outputs))
	for k := range sig.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ti := sig.Outputs[k]
		out, err := output(m.Graph, ti.Name)
		if err != nil {
			return nil, err
		}
		shape, _ := ti.Shape.ToSlice()
		for i, d := range shape {
			if d == -1 && i == 0 {
				shape[i] = 1
			}
		}
		b.fetches = append(b.fetches, out)
		b.outs = append(b.outs, infer.TensorInfo{Name: k, Type: typeName(ti.DType), Shape: ints(shape)})
	}
	b.buf = make([][]byte, len(b.fetches))
	return b, nil
}

func output(g *tf.Graph, name string) (tf.Output, error) {
	op, idx := name, 0
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		n, err := strconv.Atoi(name[i+1:])
		if err == nil {
			op, idx = name[:i], n
		}
	}
	o := g.Operation(op)
	if o == nil {
		return tf.Output{}, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: "graph has no operation " + op}
	}
	return o.Output(idx), nil
}

func ints(s []int64) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = int(v)
	}
	return out
}

func typeName(dt tf.DataType) string {
	switch dt {
	case tf.Float:
		return "float32"
	case tf.Uint8:
		return "uint8"
	case tf.Int8:
		return "int8"
	case tf.Int32:
		return "int32"
	case tf.Int64:
		return "int64"
	}
	return fmt.Sprintf("tf_type_%d", dt)
}

func (b *backend) Inputs() []infer.TensorInfo  { return b.ins }
func (b *backend) Outputs() []infer.TensorInfo { return b.outs }
func (b *backend) Runtime() (string, string)   { return "tensorflow", tf.Version() }

// Invoke runs the session. Session.Run cannot be interrupted: the deadline is enforced
// by the supervisor killing the child.
func (b *backend) Invoke(ctx context.Context, input []byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &infer.Error{Kind: infer.ErrTimeout, Msg: "deadline passed before invoke", Err: err}
	}
	t, err := tf.ReadTensor(b.inDType, b.inShape, bytes.NewReader(input))
	if err != nil {
		return nil, &infer.Error{Kind: infer.ErrBadModel, Permanent: true, Msg: "cannot build the input tensor", Err: err}
	}
	res, err := b.m.Session.Run(map[tf.Output]*tf.Tensor{b.input: t}, b.fetches, nil)
	if err != nil {
		return nil, &infer.Error{Kind: infer.ErrEngine, Msg: "session run", Err: err}
	}
	for i, r := range res {
		var w bytes.Buffer
		if _, err := r.WriteContentsTo(&w); err != nil {
			return nil, &infer.Error{Kind: infer.ErrEngine, Msg: "cannot read output " + b.outs[i].Name, Err: err}
		}
		b.buf[i] = w.Bytes()
	}
	return b.buf, nil
}

func (b *backend) Close() error {
	if b.m == nil {
		return nil
	}
	err := b.m.Session.Close()
	b.m = nil
	return err
}

// dirSHA256 hashes saved_model.pb and the files under variables/ in name order (each as
// its relative path, a NUL, its contents).
func dirSHA256(dir string) (string, error) {
	var files []string
	if _, err := os.Stat(filepath.Join(dir, "saved_model.pb")); err != nil {
		return "", err
	}
	files = append(files, "saved_model.pb")
	vars := filepath.Join(dir, "variables")
	_ = filepath.WalkDir(vars, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files[1:])
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f)
		h.Write([]byte{0})
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
