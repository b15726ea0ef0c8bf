package harness

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What the soak test (e2e TestSoak) and the bench's soak section share: a
// gate's /metrics read into numbers, the check of a `sha256sum` reply, and
// a sampler of the gate's goroutines, fds and memory over a run.

// Scrape reads the Prometheus text of a gate's metrics listener at addr
// (host:port), series by series: the key is the line's name with its labels
// as written (`go_goroutines`, `sshgate_relay_data_bytes_total{direction="in"}`).
func Scrape(addr string) (map[string]float64, error) {
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return ParseMetrics(string(b)), nil
}

// ParseMetrics reads the sample lines of a Prometheus text scrape (comments
// and lines that do not end in a number are skipped).
func ParseMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i <= 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m
}

// CheckSHA256Sum checks what `sha256sum` printed for its stdin ("HEX  -")
// against the digest of what was sent.
func CheckSHA256Sum(out string, sum []byte) error {
	want := hex.EncodeToString(sum)
	if got, _, _ := strings.Cut(strings.TrimSpace(out), " "); got != want {
		return fmt.Errorf("digest %q, want %s", out, want)
	}
	return nil
}

// GateSample is one look at a gate process.
type GateSample struct {
	At         time.Time
	Goroutines int   // go_goroutines of /metrics; -1 when the scrape failed
	HeapInuse  int64 // go_memstats_heap_inuse_bytes of /metrics, in bytes; -1 when the scrape failed
	RSSKiB     int64 // VmRSS
	ProcStats        // fds by kind and threads, from /proc
}

// SampleGate looks at gate process pid once: its /proc entries (fds under
// dataDir counted as the store's) and the metrics listener at metricsAddr.
func SampleGate(pid int, dataDir, metricsAddr string) (GateSample, error) {
	s := GateSample{At: time.Now(), Goroutines: -1, HeapInuse: -1}
	st, err := statsUnder(pid, dataDir)
	if err != nil {
		return s, err
	}
	s.ProcStats = st
	s.RSSKiB = RSSKiB(pid)
	m, err := Scrape(metricsAddr)
	if err != nil {
		return s, err
	}
	if v, ok := m["go_goroutines"]; ok {
		s.Goroutines = int(v)
	}
	if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
		s.HeapInuse = int64(v)
	}
	return s, nil
}

// Sampler takes a GateSample every interval until Stop.
type Sampler struct {
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	samples []GateSample
}

// StartSampler samples the gate at once and then every interval (samples
// that fail, because the gate is gone, are dropped).
func StartSampler(pid int, dataDir, metricsAddr string, every time.Duration) *Sampler {
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if g, err := SampleGate(pid, dataDir, metricsAddr); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, g)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Samples returns a copy of the samples so far.
func (s *Sampler) Samples() []GateSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]GateSample(nil), s.samples...)
}

// Stop ends the sampling and returns every sample; it may be called more
// than once.
func (s *Sampler) Stop() []GateSample {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.Samples()
}

// Peak is the largest f over the samples (-1 for none).
func Peak(samples []GateSample, f func(GateSample) int64) int64 {
	m := int64(-1)
	for _, s := range samples {
		m = max(m, f(s))
	}
	return m
}
