package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Serve runs handler on cfg.Address:cfg.Port with the verify route mounted,
// keeps the instance registered, and on ctx's end drains, deregisters, then
// stops accepting requests and finishes those in flight. It returns when
// all of that is done.
//
// A configuration error (a bad VerifyPath, a missing key) is returned at
// once, before anything listens. If the registry refuses the registration
// in a way that retrying cannot fix (a wrong key, a name outside the key's
// scope: see Registration.Err), Serve stops serving too, letting requests
// in flight finish, and returns that refusal (it matches ErrRefused)
// without waiting for ctx: a service nobody can find should fail loudly,
// not run unseen. To keep serving regardless, use a Registration.
func Serve(ctx context.Context, cfg ServiceConfig, handler http.Handler) error {
	reg, err := NewRegistration(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	// Cannot panic: Validate has checked VerifyPath against the
	// registry's rule, whose paths are all plain ServeMux patterns.
	mux.Handle(reg.cfg.VerifyPath, reg.VerifyHandler())
	mux.Handle("/", handler)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln := reg.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", reg.cfg.ListenAddr); err != nil {
			return errorf("serve: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	go func() { done <- reg.Run(runCtx) }()
	var regErr error
	select {
	case err := <-errc:
		stopRun()
		<-done
		return errorf("serve: %w", err)
	case <-ctx.Done():
		regErr = <-done // drains and deregisters first, so clients move away
	case regErr = <-done: // refused for good
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	return errors.Join(regErr, shutErr)
}
