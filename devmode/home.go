package devmode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// HomeEnv names the environment variable that holds the folder of local
// development state.
const HomeEnv = "OUTRIGGER_HOME"

// Files and folders under OUTRIGGER_HOME.
const (
	// ControlPlaneFile records the running development control process.
	ControlPlaneFile = "control-plane.json"
	// ControlPlaneDataDir is the development control process's data
	// directory under the home: its certificate authority lives there.
	ControlPlaneDataDir = "control-plane"
	// controlPlaneLock serialises starting the development control process.
	controlPlaneLock = "control-plane.lock"
	// LogsDir holds the development control process's log, control-plane.log.
	LogsDir = "logs"
	// ControlPlaneLog is the log of the development control process, under LogsDir.
	ControlPlaneLog = "control-plane.log"
)

// ErrNoControlPlane is returned (wrapped) when no development control
// process is recorded under OUTRIGGER_HOME, or the one recorded is gone.
var ErrNoControlPlane = errors.New("no development control process is running")

// DefaultHome returns $OUTRIGGER_HOME, or ~/.outrigger when it is not set,
// as an absolute path.
func DefaultHome() (string, error) {
	if h := os.Getenv(HomeEnv); h != "" {
		return filepath.Abs(h)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("devmode: finding the home folder (set %s): %w", HomeEnv, err)
	}
	return filepath.Join(home, ".outrigger"), nil
}

// ControlPlaneRecord is what the development control process writes to
// $OUTRIGGER_HOME/control-plane.json while it runs.
type ControlPlaneRecord struct {
	// Address is the control plane's "host:port".
	Address string `json:"address"`
	// PID is the control process's process id.
	PID int `json:"pid"`
	// Started is when it started listening.
	Started time.Time `json:"started"`
	// Version is the outrigger version it runs.
	Version string `json:"version,omitempty"`
	// NATSURL is the embedded broker's address (nats://127.0.0.1:port).
	NATSURL string `json:"natsURL,omitempty"`
}

// ReadControlPlaneRecord reads home's record of the development control
// process; with no record it returns an error wrapping ErrNoControlPlane.
func ReadControlPlaneRecord(home string) (ControlPlaneRecord, error) {
	var rec ControlPlaneRecord
	path := filepath.Join(home, ControlPlaneFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, fmt.Errorf("devmode: no record at %s: %w", path, ErrNoControlPlane)
	}
	if err != nil {
		return rec, fmt.Errorf("devmode: reading %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("devmode: %s is damaged (%v); remove it: %w", path, err, ErrNoControlPlane)
	}
	if rec.Address == "" || rec.PID <= 0 {
		return rec, fmt.Errorf("devmode: %s has no address or pid; remove it: %w", path, ErrNoControlPlane)
	}
	return rec, nil
}

// WriteControlPlaneRecord writes rec as home's record of the development
// control process, atomically: readers see the old record or the new one,
// never a part.
func WriteControlPlaneRecord(home string, rec ControlPlaneRecord) error {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("devmode: %w", err)
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(home, ControlPlaneFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("devmode: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("devmode: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("devmode: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devmode: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(home, ControlPlaneFile)); err != nil {
		return fmt.Errorf("devmode: %w", err)
	}
	return nil
}

// RemoveControlPlaneRecord removes home's record if it is the record of
// process pid (so a process that exits late never removes the record of its
// successor); pid 0 removes any record.
func RemoveControlPlaneRecord(home string, pid int) error {
	if pid != 0 {
		rec, err := ReadControlPlaneRecord(home)
		if err != nil {
			if errors.Is(err, ErrNoControlPlane) && !recordExists(home) {
				return nil
			}
			if !errors.Is(err, ErrNoControlPlane) {
				return err
			}
			// A damaged record belongs to nobody: remove it.
		} else if rec.PID != pid {
			return nil
		}
	}
	if err := os.Remove(filepath.Join(home, ControlPlaneFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("devmode: %w", err)
	}
	return nil
}

func recordExists(home string) bool {
	_, err := os.Stat(filepath.Join(home, ControlPlaneFile))
	return err == nil
}
