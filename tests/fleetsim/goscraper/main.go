// Command goscraper is the minimal Go scraper MemoryWatch's engine is compared with in hack/bench-engine:
// per target per interval it GETs the pprof index page and heap?debug=1 concurrently (as the engine's
// sample does), counts the goroutines from the index, and folds heap?debug=1 into the records' scaled
// in-use totals and the MemStats fields, at most -concurrency samples in flight (the engine's default 64).
//
// Targets (host:port) come as a JSON array on stdin; one JSON report goes to stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var indexRow = regexp.MustCompile(`(\d+)</td><td><a href='goroutine\?debug=1'>`)

type heapTotals struct {
	records         int
	liveBytes, objs float64
	memstats        map[string]string
}

func scale(count, size, rate float64) (float64, float64) {
	if count == 0 || size == 0 {
		return 0, 0
	}
	s := 1 / (1 - math.Exp(-(size/count)/rate))
	return math.Trunc(count * s), math.Trunc(size * s)
}

func parseHeap(body io.Reader) (heapTotals, error) {
	var h heapTotals
	h.memstats = map[string]string{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	rate := 0.0
	inMemStats := false
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case rate == 0:
			var a, b, c, d, n int64
			if _, err := fmt.Sscanf(string(line), "heap profile: %d: %d [%d: %d] @ heap/%d", &a, &b, &c, &d, &n); err != nil {
				return h, fmt.Errorf("not a heap profile: %q", line)
			}
			rate = float64(n) / 2
		case inMemStats:
			if k, v, ok := bytes.Cut(bytes.TrimPrefix(line, []byte("# ")), []byte(" = ")); ok {
				h.memstats[string(k)] = string(v)
			}
		case bytes.HasPrefix(line, []byte("#")):
			inMemStats = bytes.Equal(line, []byte("# runtime.MemStats"))
		case len(line) > 0:
			var ic, ib, ac, ab int64
			if _, err := fmt.Sscanf(string(line[:bytes.IndexByte(line, '@')]), "%d: %d [%d: %d]", &ic, &ib, &ac, &ab); err != nil {
				return h, fmt.Errorf("bad record %q: %v", line, err)
			}
			o, b := scale(float64(ic), float64(ib), rate)
			h.objs += o
			h.liveBytes += b
			h.records++
		}
	}
	return h, sc.Err()
}

func main() {
	seconds := flag.Float64("seconds", 20, "how long to run")
	interval := flag.Float64("interval", 0, "seconds between samples of one target (0: back to back)")
	concurrency := flag.Int("concurrency", 64, "samples in flight at most")
	flag.Parse()

	var targets []string
	if err := json.NewDecoder(os.Stdin).Decode(&targets); err != nil {
		fmt.Fprintln(os.Stderr, "goscraper: stdin: want a JSON array of host:port:", err)
		os.Exit(2)
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2, MaxIdleConns: 4 * len(targets), IdleConnTimeout: 75 * time.Second, DisableCompression: true},
	}
	get := func(url string, parse func(io.Reader) error) error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		}
		return parse(io.LimitReader(resp.Body, 32<<20))
	}
	sample := func(addr string) error {
		errs := make(chan error, 2)
		go func() {
			errs <- get("http://"+addr+"/debug/pprof/", func(r io.Reader) error {
				page, err := io.ReadAll(r)
				if err == nil && indexRow.FindSubmatch(page) == nil {
					err = fmt.Errorf("%s: no goroutine row in the index", addr)
				}
				return err
			})
		}()
		go func() {
			errs <- get("http://"+addr+"/debug/pprof/heap?debug=1", func(r io.Reader) error {
				h, err := parseHeap(r)
				if err == nil && (h.memstats["Sys"] == "" || h.liveBytes < 0) {
					err = fmt.Errorf("%s: no MemStats", addr)
				}
				if err == nil {
					_, err = strconv.ParseInt(h.memstats["HeapReleased"], 10, 64)
				}
				return err
			})
		}()
		err1, err2 := <-errs, <-errs
		if err1 != nil {
			return err1
		}
		return err2
	}

	slots := make(chan struct{}, *concurrency)
	for _, t := range targets { // warm-up: connections, as the engine's first contact
		slots <- struct{}{}
		go func(t string) { _ = sample(t); <-slots }(t)
	}
	for i := 0; i < cap(slots); i++ {
		slots <- struct{}{}
	}
	for i := 0; i < cap(slots); i++ {
		<-slots
	}

	var mu sync.Mutex
	var latencies []float64
	errors := 0
	cpu0 := cpuSeconds()
	start := time.Now()
	deadline := start.Add(time.Duration(*seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func(i int, t string) {
			defer wg.Done()
			time.Sleep(time.Duration(*interval * float64(i) / float64(len(targets)) * float64(time.Second)))
			for {
				began := time.Now()
				if !began.Before(deadline) {
					return
				}
				slots <- struct{}{}
				err := sample(t)
				<-slots
				took := time.Since(began).Seconds()
				mu.Lock()
				if err != nil {
					errors++
				} else {
					latencies = append(latencies, took)
				}
				mu.Unlock()
				if *interval > 0 {
					time.Sleep(time.Duration((*interval - took) * float64(time.Second)))
				}
			}
		}(i, t)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	sort.Float64s(latencies)
	n := len(latencies)
	pct := func(p float64) float64 {
		if n == 0 {
			return 0
		}
		return 1000 * latencies[min(n-1, int(float64(n)*p))]
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"targets": len(targets), "samples": n, "errors": errors, "elapsed_seconds": elapsed, "cpu_seconds": cpu,
		"samples_per_second": float64(n) / elapsed, "samples_per_cpu_second": float64(n) / math.Max(cpu, 1e-9),
		"latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99),
	})
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
