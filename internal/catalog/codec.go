package catalog

import (
	"encoding/json"
	"fmt"
)

// commandVersion is the first byte of every encoded command, so that the log
// format can change without guessing.
const commandVersion byte = 1

// EncodeCommand returns the Raft log form of cmd.
func EncodeCommand(cmd Command) ([]byte, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("catalog: encode command: %w", err)
	}
	return append([]byte{commandVersion}, b...), nil
}

// DecodeCommand parses the Raft log form of a command. It never panics,
// whatever the input.
func DecodeCommand(b []byte) (Command, error) {
	var cmd Command
	if len(b) == 0 || b[0] != commandVersion {
		return cmd, fmt.Errorf("%w: unknown encoding", ErrBadCommand)
	}
	if err := json.Unmarshal(b[1:], &cmd); err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return cmd, nil
}
