package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/audit/recording"
	"github.com/sshgate/sshgate/internal/config"
)

func (e *env) replayCmd() *cobra.Command {
	var speed float64
	var maxIdle time.Duration
	var config string
	cmd := &cobra.Command{
		Use:   "replay FILE|SESSION_ID",
		Short: "Play a session recording (asciicast v2, a file or a session id) in this terminal, with harmful escape sequences neutralised",
		Args:  argsOf([]string{"FILE|SESSION_ID"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if speed <= 0 || speed > 1e6 {
				return usagef("replay: --speed %g must be above 0 (and at most 1000000)", speed)
			}
			if maxIdle < 0 {
				return usagef("replay: --max-idle %s must not be negative", maxIdle)
			}
			file, err := e.recordingFile(args[0], config)
			if err != nil {
				return err
			}
			// Check the whole file first: a malformed one plays nothing.
			if err := readRecording(file, nil); err != nil {
				return err
			}
			out := bufio.NewWriter(e.stdout)
			san := recording.NewSanitizer(out)
			var last float64
			err = readRecording(file, func(ev recording.Event) error {
				if ev.Type != "o" {
					return nil
				}
				gap := time.Duration((ev.Time - last) * float64(time.Second))
				last = ev.Time
				if maxIdle > 0 && gap > maxIdle {
					gap = maxIdle
				}
				if wait := time.Duration(float64(gap) / speed); wait >= time.Millisecond {
					if err := out.Flush(); err != nil {
						return err
					}
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-cmd.Context().Done():
						t.Stop()
						return cmd.Context().Err()
					}
				}
				_, err := san.Write([]byte(ev.Data))
				return err
			})
			if err != nil {
				return err
			}
			if err := san.Flush(); err != nil {
				return err
			}
			return out.Flush()
		}),
	}
	cmd.Flags().Float64Var(&speed, "speed", 1, "playback speed factor (2 plays twice as fast)")
	cmd.Flags().StringVar(&config, "config", "", "YAML configuration file, for recordings.dir when replaying by session id")
	cmd.Flags().DurationVar(&maxIdle, "max-idle", 0, "cap pauses to this long, e.g. 2s (0: keep the recorded pauses)")
	return cmd
}

// readRecording reads file, passing each event to f (nil: only check it).
// A malformed file is a usage error naming the file and the line.
func readRecording(file string, f func(recording.Event) error) error {
	fh, err := os.Open(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return failf("replay: %s: no such file", file)
		}
		return failf("replay: cannot open %s", file)
	}
	defer fh.Close()
	bad := func(err error) error {
		var pe *recording.ParseError
		if errors.As(err, &pe) {
			return usagef("replay: %s: line %d: %s", file, pe.Line, pe.Msg)
		}
		return failf("replay: cannot read %s", file)
	}
	rd, err := recording.NewReader(fh)
	if err != nil {
		return bad(err)
	}
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bad(err)
		}
		if f != nil {
			if err := f(ev); err != nil {
				return fmt.Errorf("replay %s: %w", file, err)
			}
		}
	}
}

// recordingFile is the recording to play: arg itself when it names a file,
// else the recording of session arg in the recordings directory
// (recordings.dir of the configuration, default DATA/recordings).
func (e *env) recordingFile(arg, configFile string) (string, error) {
	if _, err := os.Stat(arg); err == nil || !sessionID.MatchString(arg) {
		return arg, nil
	}
	cfg, err := config.Check(configFile, nil)
	if err != nil {
		return "", usagef("replay: %v", err)
	}
	d, err := e.dataDir()
	if err != nil {
		return "", err
	}
	dir := cfg.Recordings.Dir
	switch {
	case dir == "":
		dir = d.RecordingsDir()
	case !filepath.IsAbs(dir):
		dir = filepath.Join(d.Path, dir)
	}
	file := filepath.Join(dir, recording.FileName(arg))
	if _, err := os.Stat(file); err != nil {
		return "", failf("replay: no recording of session %s in %s", arg, dir)
	}
	return file, nil
}
