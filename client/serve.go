package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve runs handler on cfg.Address:cfg.Port with the verify route mounted,
// keeps the instance registered, and on ctx's end drains, deregisters, then
// stops accepting requests and finishes those in flight. It returns when
// all of that is done.
func Serve(ctx context.Context, cfg ServiceConfig, handler http.Handler) error {
	reg, err := NewRegistration(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(reg.cfg.VerifyPath, reg.VerifyHandler())
	mux.Handle("/", handler)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln := reg.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", reg.cfg.ListenAddr); err != nil {
			return fmt.Errorf("client: serve: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	go func() { done <- reg.Run(runCtx) }()
	select {
	case err := <-errc:
		stopRun()
		<-done
		return fmt.Errorf("client: serve: %w", err)
	case <-ctx.Done():
	}
	regErr := <-done // drains and deregisters first, so clients move away
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	return errors.Join(regErr, shutErr)
}
