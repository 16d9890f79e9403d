package control

import (
	"errors"
	"fmt"
	"net/http"
)

// The classes of failure a [Backend] reports, wrapped around its own message.
var (
	ErrNotFound    = errors.New("not found")         // 404: no such job
	ErrConflict    = errors.New("conflict")          // 409: the job is running
	ErrInvalid     = errors.New("invalid request")   // 400: a bad argument
	ErrUnavailable = errors.New("unavailable")       // 503: the queue or the disk is full
	ErrRefused     = errors.New("refused")           // 422: a reload the daemon refused
	ErrTooLarge    = errors.New("request too large") // 413: an image over the limit
)

var statusOf = []struct {
	err  error
	code int
}{
	{ErrNotFound, http.StatusNotFound},
	{ErrConflict, http.StatusConflict},
	{ErrInvalid, http.StatusBadRequest},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrRefused, http.StatusUnprocessableEntity},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
}

// httpStatus is the status a backend error is answered with; an unclassified error is
// a 500.
func httpStatus(err error) int {
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	return http.StatusInternalServerError
}

// classed is an error with the daemon's message that matches its class in errors.Is.
type classed struct {
	msg   string
	class error
}

func (e *classed) Error() string { return e.msg }
func (e *classed) Unwrap() error { return e.class }

// Errorf returns an error of the given class with the formatted message (the class's
// own name is not added to it).
func Errorf(class error, format string, args ...any) error {
	return &classed{msg: fmt.Sprintf(format, args...), class: class}
}

// fromStatus rebuilds, on the client side, an error of the class the status stands for.
func fromStatus(code int, msg string) error {
	for _, s := range statusOf {
		if s.code == code {
			return &classed{msg: msg, class: s.err}
		}
	}
	return errors.New(msg)
}
