package kernellane

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// statusFile is the name of the file the guest writes into the control share:
// "exit N\n" once the command has run, or "error MESSAGE\n" when the guest could
// not run it.
const statusFile = "status"

// ExitNoResult is the exit code of vmtest when the command's status is unknown: the
// guest crashed, timed out or could not be set up. It is never mistaken for a pass.
const ExitNoResult = 125

// ErrNoResult means the guest wrote no status: it crashed, hung or was killed.
var ErrNoResult = errors.New("no result: the guest wrote no exit status (crashed, timed out or killed)")

// ParseStatus reads the status file's content.
func ParseStatus(data []byte) (int, error) {
	s := strings.TrimRight(string(data), "\n")
	if strings.Contains(s, "\n") {
		return 0, fmt.Errorf("status %q: more than one line", s)
	}
	switch kind, rest, _ := strings.Cut(s, " "); kind {
	case "exit":
		code, err := strconv.Atoi(rest)
		if err != nil || code < 0 || code > 255 {
			return 0, fmt.Errorf("status %q: bad exit code", s)
		}
		return code, nil
	case "error":
		return 0, fmt.Errorf("guest: %s", rest)
	default:
		return 0, fmt.Errorf("status %q: unknown", s)
	}
}

// readStatus reads and parses the status file; a missing file is ErrNoResult.
func readStatus(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoResult
	}
	if err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	return ParseStatus(data)
}
