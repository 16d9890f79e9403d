package infer

import (
	"errors"
	"fmt"
)

// ErrPermanent marks errors that retrying cannot fix: errors.Is(err, ErrPermanent).
var ErrPermanent = errors.New("permanent")

// Error kinds callers may branch on with errors.Is. Each *Error wraps exactly one.
var (
	ErrBadImage       = errors.New("bad image")                 // permanent: not an image, corrupt, truncated, empty
	ErrImageTooLarge  = errors.New("image too large")           // permanent: dimensions over the pixel limit
	ErrBadModel       = errors.New("bad model")                 // permanent: invalid file, wrong shapes for its kind
	ErrBadConfig      = errors.New("bad configuration")         // permanent: a config field has a bad value
	ErrTimeout        = errors.New("inference timed out")       // transient
	ErrEngineCrashed  = errors.New("engine child crashed")      // transient: the child died; it is restarted
	ErrRuntimeMissing = errors.New("inference runtime missing") // transient: the library could not be loaded
	ErrEngine         = errors.New("engine error")              // transient: other runtime failures
	ErrClosed         = errors.New("engine closed")             // transient
)

// kindByName maps a kind's text (as sent over the child pipe) back to the kind.
func kindByName(name string) error {
	for _, k := range []error{ErrBadImage, ErrImageTooLarge, ErrBadModel, ErrBadConfig, ErrTimeout,
		ErrEngineCrashed, ErrRuntimeMissing, ErrEngine, ErrClosed} {
		if k.Error() == name {
			return k
		}
	}
	return ErrEngine
}

// Error is the error type of this package: a kind, whether it is permanent, a message,
// and an optional cause.
type Error struct {
	Kind      error  // one of the ErrXxx kinds above
	Permanent bool   // retrying cannot help
	Msg       string // what is wrong, for people
	Err       error  // cause, may be nil
}

func (e *Error) Error() string {
	s := e.Kind.Error()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes the kind and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	errs := []error{e.Kind}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Is reports ErrPermanent for permanent errors.
func (e *Error) Is(target error) bool { return target == ErrPermanent && e.Permanent }

// IsPermanent reports whether retrying err cannot help.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

func newErr(kind error, permanent bool, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Permanent: permanent, Msg: fmt.Sprintf(format, args...), Err: cause}
}

func badImage(cause error, format string, args ...any) *Error {
	return newErr(ErrBadImage, true, cause, format, args...)
}

func badModel(cause error, format string, args ...any) *Error {
	return newErr(ErrBadModel, true, cause, format, args...)
}

// wireError carries an error across the child pipe.
type wireError struct {
	Kind      string
	Permanent bool
	Msg       string
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		msg := e.Msg
		if e.Err != nil {
			if msg != "" {
				msg += ": "
			}
			msg += e.Err.Error()
		}
		return &wireError{Kind: e.Kind.Error(), Permanent: e.Permanent, Msg: msg}
	}
	return &wireError{Kind: ErrEngine.Error(), Permanent: IsPermanent(err), Msg: err.Error()}
}

func (w *wireError) toError() error {
	if w == nil {
		return nil
	}
	return &Error{Kind: kindByName(w.Kind), Permanent: w.Permanent, Msg: w.Msg}
}
