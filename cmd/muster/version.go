package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildInfo is what `muster version` reports.
type buildInfo struct {
	Version string `json:"version"`
	// Commit, CommitTime and Modified come from the VCS stamp that go
	// build records (vcs.revision, vcs.time, vcs.modified); a build
	// without one (-buildvcs=false, or outside a checkout) leaves them
	// empty. Go records no build time, so that builds are reproducible:
	// CommitTime dates the source instead.
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

// currentBuildInfo describes this binary.
func currentBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return newBuildInfo(version, bi)
}

// newBuildInfo prefers the version set with -ldflags, then the main
// module's version (set by go install module@version, or from the VCS tag
// by go build), then "dev".
func newBuildInfo(ldflagsVersion string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: ldflagsVersion, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		bi = &debug.BuildInfo{}
	}
	if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// text is the human form, one field a line.
func (b buildInfo) text() string {
	commit, when := b.Commit, b.CommitTime
	if commit == "" {
		commit = "unknown (built without VCS information)"
	} else if b.Modified {
		commit += " (modified)"
	}
	if when == "" {
		when = "unknown"
	}
	return fmt.Sprintf("muster %s\ncommit:      %s\ncommit time: %s\ngo:          %s %s\n", b.Version, commit, when, b.Go, b.Platform)
}

func newVersionCmd(info buildInfo) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "version [flags]",
		Short: "show the version, commit and Go version of this binary",
		Args:  nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printOut(cmd.OutOrStdout(), out.String(), info, nil, func(w io.Writer) error {
				_, err := io.WriteString(w, info.text())
				return err
			})
		},
	}
	out = enumFlag(cmd, "output", "o", "text", "output format: text, json or yaml", "text", "json", "yaml")
	return cmd
}
