package checks

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The gRPC check is the standard health protocol (grpc.health.v1), spoken
// over net/http's HTTP/2 client with prior knowledge instead of through
// grpc-go, which would bring a large dependency into the registry for one
// unary call. The exchange is small enough to write out:
//
//   - the request is POST /grpc.health.v1.Health/Check with Content-Type
//     application/grpc and TE: trailers, and a body of one length-prefixed
//     message (a zero compression flag, a 4-byte big-endian length, the
//     protobuf HealthCheckRequest: field 1, the service name, a string);
//   - the answer is one such message, HealthCheckResponse (field 1, the
//     status, an enum: SERVING is 1), and its outcome is the grpc-status
//     trailer (or header, in a trailers-only answer to a failed call).
//
// The tests run it against grpc-go's own health server.

// healthPath is the method every gRPC check calls.
const healthPath = "/grpc.health.v1.Health/Check"

// maxGRPCAnswer caps the bytes of a gRPC answer a probe reads; a
// HealthCheckResponse is 2 bytes.
const maxGRPCAnswer = 1 << 10

// servingStatus is HealthCheckResponse.ServingStatus.
const (
	servingUnknown        = 0
	serving               = 1
	notServing            = 2
	servingServiceUnknown = 3
)

// errMalformed means a gRPC answer does not follow the protocol.
var errMalformed = errors.New("checks: malformed gRPC answer")

// grpcHealth calls Health/Check for c.GRPCService; SERVING passes.
//
// Over TLS (an https instance), the call has a connection of its own
// (http.Transport.NewClientConn: never one from a pool, which another
// instance's probe, with other TLS settings, could have opened), and
// HTTP/2 is negotiated by ALPN "h2".
func (p *prober) grpcHealth(ctx context.Context, e endpoint, c Check) result {
	scheme := "http://"
	if e.tls != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+e.hostport+healthPath, bytes.NewReader(healthRequest(c.GRPCService)))
	if err != nil {
		return result{output: "invalid request"}
	}
	req.Host = e.host
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", userAgent)
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(dl)))
	}
	var resp *http.Response
	if e.tls != nil {
		resp, err = p.grpcOverTLS(ctx, e, req)
	} else {
		resp, err = p.grpc.Do(req)
	}
	if err != nil {
		out := describe(err, c.Timeout)
		if out == failed {
			// Connected, but no HTTP/2 exchange came of it.
			out = "no gRPC answer: not an HTTP/2 server?"
		}
		return result{output: out}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") {
		return result{output: "not a gRPC answer: HTTP " + strconv.Itoa(resp.StatusCode)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxGRPCAnswer+1))
	if err != nil {
		return result{output: "gRPC answer incomplete: " + describe(err, c.Timeout)}
	}
	if len(data) > maxGRPCAnswer {
		return result{output: "gRPC answer too large"}
	}
	// A call that fails before any message is answered with headers
	// only, which carry the status.
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status")
	}
	switch code {
	case "0":
	case "":
		return result{output: "gRPC answer without a status"}
	default:
		// The status's name only: its message is the instance's text,
		// not the registry's to publish.
		return result{output: "gRPC " + grpcCodeName(code)}
	}
	status, err := healthResponse(data)
	if err != nil {
		return result{output: "malformed gRPC answer"}
	}
	switch status {
	case serving:
		return result{ok: true, output: "SERVING"}
	case notServing:
		return result{output: "NOT_SERVING"}
	case servingServiceUnknown:
		return result{output: "SERVICE_UNKNOWN"}
	case servingUnknown:
		return result{output: "UNKNOWN"}
	}
	return result{output: "serving status " + strconv.FormatUint(status, 10)}
}

// healthRequest returns the length-prefixed HealthCheckRequest for
// service; the empty service is the empty message.
func healthRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 1<<3|2) // field 1, length-delimited
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// healthResponse returns the status field of the one length-prefixed,
// uncompressed HealthCheckResponse that data must hold. Unknown fields are
// skipped, as protobuf requires; a missing status is 0, UNKNOWN.
func healthResponse(data []byte) (uint64, error) {
	if len(data) < 5 || data[0] != 0 || uint64(binary.BigEndian.Uint32(data[1:5])) != uint64(len(data)-5) {
		return 0, errMalformed
	}
	msg := data[5:]
	var status uint64
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return 0, errMalformed
		}
		msg = msg[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return 0, errMalformed
			}
			msg = msg[n:]
			if key>>3 == 1 {
				status = v
			}
		case 1: // 64-bit
			if len(msg) < 8 {
				return 0, errMalformed
			}
			msg = msg[8:]
		case 2: // length-delimited
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return 0, errMalformed
			}
			msg = msg[n+int(l):]
		case 5: // 32-bit
			if len(msg) < 4 {
				return 0, errMalformed
			}
			msg = msg[4:]
		default:
			return 0, errMalformed
		}
	}
	return status, nil
}

// grpcTimeout encodes d as a grpc-timeout header value in milliseconds,
// rounded up (at most 8 digits, as the protocol allows).
func grpcTimeout(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(min(max(ms, 1), 99_999_999)), 10) + "m"
}

// grpcCodeName names a grpc-status code ("14 UNAVAILABLE"); a value that
// is not a code is shown as "status ?".
func grpcCodeName(code string) string {
	names := [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 || n >= len(names) {
		return "status ?"
	}
	return code + " " + names[n]
}
