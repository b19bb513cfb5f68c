package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain", in: "1234 (muster) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200 18446744073709551615",
			want: 3 * time.Second},
		{name: "name with spaces and parens", in: "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0",
			want: 100 * time.Millisecond},
		{name: "trailing newline", in: "7 (x) S 1 7 7 0 -1 0 0 0 0 0 1 0 0 0 20 0 1 0 5 0 0\n", want: 10 * time.Millisecond},
		{name: "no name", in: "1234 muster S 1", wantErr: true},
		{name: "short", in: "1 (x) S 1 2 3", wantErr: true},
		{name: "not a number", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 3 0 0", wantErr: true},
		{name: "negative", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -4 3 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat: err %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStat = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{name: "plain", in: "Name:\tmuster\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n", want: 12345 << 10},
		{name: "none", in: "Name:\tkthreadd\nThreads:\t1\n", wantErr: true},
		{name: "bad unit", in: "VmRSS:\t12 MB\n", wantErr: true},
		{name: "bad number", in: "VmRSS:\tx kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStatus: err %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStatus = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestReadSelf reads this process's own figures, where /proc exists.
func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if cpu, err := ReadCPU(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("ReadCPU(self) = %v, %v", cpu, err)
	}
	if rss, err := ReadRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("ReadRSS(self) = %d, %v", rss, err)
	}
	if _, err := ReadCPU(-1); err == nil {
		t.Error("ReadCPU(-1) succeeded")
	}
}
