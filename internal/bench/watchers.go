package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
)

// Arrival is one watcher reading one registered event: the event's id
// (the registration's index) and when it was read.
type Arrival struct {
	ID string
	At time.Time
}

// Watchers are event streams held open on one service.
type Watchers struct {
	// Arrivals receives every registered event every stream reads.
	Arrivals <-chan Arrival
	stop     context.CancelFunc
	wg       sync.WaitGroup
	tr       *http.Transport
}

// OpenWatchers opens n event streams (GET /v1/watch?service=service) on
// the registry at url, from 8 loopback addresses (127.0.0.2 to .9), as
// from many clients: one address may hold only its share of streams. It
// returns once every stream has sent its first snapshot, or fails after
// 30 s. Close ends them. tlsCfg is for an https:// url (nil: the
// system's roots).
func OpenWatchers(ctx context.Context, url, service string, n int, tlsCfg *tls.Config) (*Watchers, error) {
	arrivals := make(chan Arrival, n*4)
	var next atomic.Int64
	w := &Watchers{Arrivals: arrivals}
	w.tr = &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true, TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+next.Add(1)%8))}
			return (&net.Dialer{LocalAddr: from}).DialContext(ctx, network, addr)
		}}
	hc := &http.Client{Transport: w.tr}
	streamCtx, stop := context.WithCancel(ctx)
	w.stop = stop
	ready := make(chan struct{}, n)
	for range n {
		req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, url+"/v1/watch?service="+service, nil)
		resp, err := hc.Do(req)
		if err != nil {
			w.Close()
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			w.Close()
			return nil, fmt.Errorf("watch: %s", resp.Status)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer resp.Body.Close()
			readArrivals(streamCtx, bufio.NewReaderSize(resp.Body, 64<<10), ready, arrivals)
		}()
	}
	for range n {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			w.Close()
			return nil, errors.New("streams did not all start in 30 s")
		}
	}
	return w, nil
}

// readArrivals reads one stream: its snapshot's id signals ready, each
// registered event's id goes to arrivals with the time it was read.
func readArrivals(ctx context.Context, br *bufio.Reader, ready chan<- struct{}, arrivals chan<- Arrival) {
	var event string
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		now := time.Now()
		switch {
		case strings.HasPrefix(string(line), "event: "):
			event = strings.TrimSpace(string(line[len("event: "):]))
		case strings.HasPrefix(string(line), "id: ") && event == api.EventSnapshot:
			ready <- struct{}{}
		case strings.HasPrefix(string(line), "id: ") && event == api.EventRegistered:
			select {
			case arrivals <- Arrival{strings.TrimSpace(string(line[len("id: "):])), now}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Close ends the streams and waits for their readers.
func (w *Watchers) Close() {
	w.stop()
	w.wg.Wait()
	w.tr.CloseIdleConnections()
}
