package queue

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/inferq/inferq/internal/logkey"
)

func newBlobName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeBlob stores data as a new blob file: temp file, fsync, rename. The
// directory is fsynced by the batch commit, before the record is committed.
func (q *Queue) writeBlob(data []byte) (string, error) {
	name := newBlobName()
	tmp := filepath.Join(q.blobDir, "tmp-"+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("cannot create blob: %w", err)
	}
	_, err = f.Write(data)
	if err := q.finishBlob(f, tmp, name, err); err != nil {
		return "", fmt.Errorf("cannot write blob: %w", err)
	}
	return name, nil
}

// finishBlob syncs and closes f, the temp file tmp, and renames it to name in
// the blob dir. When any step fails, or err (from writing f) is not nil, the
// temp file is removed and the first error returned.
func (q *Queue) finishBlob(f *os.File, tmp, name string, err error) error {
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.blobDir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// adoptBlob takes the regular file src into the blob dir: a hard link when src
// is on the same file system, else a copy. The data is fsynced either way and
// its size and sha256 computed.
func (q *Queue) adoptBlob(src string) (name string, size int64, sum [32]byte, err error) {
	fi, err := os.Lstat(src)
	if err != nil {
		return "", 0, sum, invalidf("image_file %q: %v", src, err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, sum, invalidf("image_file %q: not a regular file", src)
	}
	name = newBlobName()
	tmp := filepath.Join(q.blobDir, "tmp-"+name)
	var f *os.File
	if err = os.Link(src, tmp); err == nil {
		f, err = os.Open(tmp)
	} else if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
		f, err = copyFile(src, tmp)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", 0, sum, fmt.Errorf("cannot adopt image file: %w", err)
	}
	h := sha256.New()
	if _, err = f.Seek(0, io.SeekStart); err == nil {
		size, err = io.Copy(h, f)
	}
	if err = q.finishBlob(f, tmp, name, err); err != nil {
		return "", 0, sum, fmt.Errorf("cannot adopt image file: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	return name, size, sum, nil
}

// onBlobDevice reports whether fi is on the blob directory's file system (read once
// at Open): such an image is linked in, not copied.
func (q *Queue) onBlobDevice(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && q.blobDev != nil && uint64(st.Dev) == *q.blobDev
}

func copyFile(src, dst string) (*os.File, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

func (q *Queue) removeBlob(name string) {
	if err := os.Remove(filepath.Join(q.blobDir, name)); err != nil && !os.IsNotExist(err) {
		q.log.Warn("queue cannot remove blob", "blob", name, logkey.Err, err)
	}
}
