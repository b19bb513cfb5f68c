package api

// Check types: what a check asks the instance.
const (
	// CheckHTTP GETs a path on the instance; any 2xx answer passes.
	CheckHTTP = "http"
	// CheckTCP opens a TCP connection to the instance; connecting passes.
	CheckTCP = "tcp"
	// CheckGRPC calls the standard grpc.health.v1.Health/Check; SERVING
	// passes.
	CheckGRPC = "grpc"
)

// CheckDecl is one active health check a registration declares. Every
// check probes the instance's own advertised address (on Port if set,
// else on the instance's port) and nothing else. Durations are Go
// duration strings ("5s"); a field left out takes its default.
//
//	{"type": "http", "path": "/healthz", "interval": "5s", "timeout": "1s"}
type CheckDecl struct {
	// Type is CheckHTTP, CheckTCP or CheckGRPC.
	Type string `json:"type"`
	// Path is the HTTP check's request path and query; default "/".
	// Only for CheckHTTP.
	Path string `json:"path,omitempty"`
	// Port is where the check connects; default the instance's port.
	Port int `json:"port,omitempty"`
	// Interval is the time between two probes, from 1s to 1h; default 10s.
	Interval string `json:"interval,omitempty"`
	// Timeout bounds one probe (connect, request and answer); at most the
	// interval and 10s; default the smaller of the interval and 5s.
	Timeout string `json:"timeout,omitempty"`
	// GRPCService is the service name the gRPC check asks about; default
	// "", the server as a whole. Only for CheckGRPC.
	GRPCService string `json:"grpc_service,omitempty"`
	// FailuresBeforeCritical is how many consecutive failed probes turn a
	// passing check critical; 1 to 10, default 3.
	FailuresBeforeCritical int `json:"failures_before_critical,omitempty"`
	// SuccessesBeforePassing is how many consecutive successful probes
	// turn a critical check passing; 1 to 10, default 2.
	SuccessesBeforePassing int `json:"successes_before_passing,omitempty"`
}

// CheckState is one check of an instance as lookups show it.
type CheckState struct {
	// Type is the check's type (CheckHTTP, CheckTCP, CheckGRPC).
	Type string `json:"type"`
	// Status is StatusPassing or StatusCritical.
	Status string `json:"status"`
	// Output is a short excerpt of the last probe's result ("HTTP 503:
	// overloaded", "connection refused"): at most 256 bytes of printable
	// text, with no internal detail.
	Output string `json:"output"`
	// LastRunMS is the age of the last probe in milliseconds; -1 when
	// this registry has not probed the check since it became leader.
	LastRunMS int64 `json:"last_run_ms"`
}
