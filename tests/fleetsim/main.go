// Command fleetsim serves thousands of simulated Go services from one process, each on its own loopback
// address, for benchmarks and scale tests of MemoryWatch.
//
// Every target answers what net/http/pprof and a Prometheus client would: the index page,
// heap?debug=1 (records with frames and the full MemStats tail, 256-entry PauseNs/PauseEnd), /metrics,
// goroutine?debug=1 and debug=2, and the binary profiles (the simulator's own real runtime profiles, so
// they parse). Each target follows one shape over simulated time (healthy, sawtooth, burst, heap-leak,
// goroutine-leak, nonheap-leak, finalizer-leak; see series.go), and counts the scrapes it gets.
//
// Address plan: `-count N` targets on `-ips M` consecutive addresses from `-first-ip` (N/M ports per
// address from `-port`, or ephemeral ports with -port 0), or exactly the `host:port` lines of
// `-addr-file` (e.g. kwok pod IPs). More can be added while running: POST /targets on the control address.
//
// Control address (`-control`, loopback): GET /targets, GET /counts (scrapes per target and endpoint),
// POST /targets (body: host:port lines, optionally `host:port kind`), GET /healthz.
// On start it prints one JSON line to stdout: {"control": "...", "targets": [{"addr": ..., "kind": ...}]}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type counters struct {
	index, heap, metrics, goroutine, profile, other atomic.Int64
}

type fleet struct {
	mu        sync.RWMutex
	targets   map[string]*target // by listening address host:port
	order     []*target
	mix       plan
	records   int
	metrics   float64 // fraction of targets serving /metrics
	rates     rates
	speed     float64
	start     time.Time
	startNano int64
	server    *http.Server
	bufs      sync.Pool
	maxDump   int
	cpuProf   []byte
	noMetrics map[string]bool
}

func (f *fleet) simSeconds() float64 { return time.Since(f.start).Seconds() * f.speed }

func (f *fleet) add(addr, kind string) (*target, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%q: want host:port: %v", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("%s: only loopback addresses (127.0.0.0/8, ::1) are served", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	real := ln.Addr().String()
	f.mu.Lock()
	if kind == "" {
		kind = f.mix.kind(len(f.order))
	}
	tg := newTarget(real, kind, f.records)
	// /metrics on a deterministic fraction of targets (the rest answer 404, as many services do).
	if unit(tg.seed, "metrics", 0) >= f.metrics {
		f.noMetrics[real] = true
	}
	f.targets[real] = tg
	f.order = append(f.order, tg)
	f.mu.Unlock()
	go func() { _ = f.server.Serve(ln) }()
	return tg, nil
}

func (f *fleet) lookup(r *http.Request) *target {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if local == nil {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.targets[local.String()]
}

func (f *fleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tg := f.lookup(r)
	if tg == nil {
		http.Error(w, "unknown target", http.StatusNotFound)
		return
	}
	b := f.bufs.Get().(*bytes.Buffer)
	b.Reset()
	defer f.bufs.Put(b)
	s := tg.at(f.simSeconds(), f.rates)
	q := r.URL.Query()
	debug := q.Get("debug")
	path := r.URL.Path
	text := "text/plain; charset=utf-8"
	switch {
	case path == "/metrics":
		tg.counts.metrics.Add(1)
		f.mu.RLock()
		absent := f.noMetrics[tg.addr]
		f.mu.RUnlock()
		if absent {
			http.NotFound(w, r)
			return
		}
		m := tg.memstats(s, f.startNano)
		renderMetrics(b, s, m)
		text = "text/plain; version=0.0.4; charset=utf-8"
	case path == "/debug/pprof/" || path == "/debug/pprof":
		tg.counts.index.Add(1)
		renderIndex(b, tg, s)
		text = "text/html; charset=utf-8"
	case path == "/debug/pprof/heap" && debug == "1":
		tg.counts.heap.Add(1)
		renderHeap(b, tg, s, f.startNano)
	case path == "/debug/pprof/goroutine" && (debug == "1" || debug == "2"):
		tg.counts.goroutine.Add(1)
		renderGoroutines(b, tg, s, debug == "2", f.maxDump)
	case path == "/debug/pprof/profile":
		tg.counts.profile.Add(1)
		seconds, err := strconv.ParseFloat(q.Get("seconds"), 64)
		if err != nil || seconds <= 0 {
			seconds = 30
		}
		select { // a CPU profile takes its seconds, as the real one does
		case <-time.After(time.Duration(min(seconds, 60) * float64(time.Second))):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(f.cpuProf)
		return
	case path == "/debug/pprof/cmdline":
		tg.counts.other.Add(1)
		fmt.Fprintf(b, "/srv/%s\x00-listen=%s", tg.kind, tg.addr)
	case strings.HasPrefix(path, "/debug/pprof/"):
		name := strings.TrimPrefix(path, "/debug/pprof/")
		p := pprof.Lookup(name)
		if p == nil || (debug != "" && debug != "0") {
			tg.counts.other.Add(1)
			http.NotFound(w, r)
			return
		}
		tg.counts.profile.Add(1)
		// The simulator's own runtime profile: real protobuf, so captures parse and validate.
		if err := p.WriteTo(b, 0); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		text = "application/octet-stream"
	default:
		tg.counts.other.Add(1)
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", text)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

type targetInfo struct {
	Addr    string `json:"addr"`
	Kind    string `json:"kind"`
	Metrics bool   `json:"metrics"`
}

type countInfo struct {
	Index     int64 `json:"index"`
	Heap      int64 `json:"heap"`
	Metrics   int64 `json:"metrics"`
	Goroutine int64 `json:"goroutine"`
	Profile   int64 `json:"profile"`
	Other     int64 `json:"other"`
}

func (f *fleet) infos() []targetInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]targetInfo, 0, len(f.order))
	for _, tg := range f.order {
		out = append(out, targetInfo{tg.addr, tg.kind, !f.noMetrics[tg.addr]})
	}
	return out
}

func (f *fleet) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		f.mu.RLock()
		out := make(map[string]countInfo, len(f.order))
		for _, tg := range f.order {
			c := &tg.counts
			out[tg.addr] = countInfo{c.index.Load(), c.heap.Load(), c.metrics.Load(), c.goroutine.Load(), c.profile.Load(), c.other.Load()}
		}
		f.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/targets", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			var added []targetInfo
			sc := bufio.NewScanner(io.LimitReader(r.Body, 16<<20))
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				if len(fields) == 0 {
					continue
				}
				kind := ""
				if len(fields) > 1 {
					kind = fields[1]
				}
				tg, err := f.add(fields[0], kind)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				added = append(added, targetInfo{tg.addr, tg.kind, !f.noMetrics[tg.addr]})
			}
			_ = json.NewEncoder(w).Encode(added)
			return
		}
		_ = json.NewEncoder(w).Encode(f.infos())
	})
	return mux
}

// planAddresses lays out `count` targets over `ips` consecutive addresses from `first`, ports from `port`.
func planAddresses(first string, ips, count, port int) ([]string, error) {
	ip, err := netip.ParseAddr(first)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("-first-ip %q: want an IPv4 loopback address such as 127.20.0.1", first)
	}
	if ips < 1 {
		return nil, fmt.Errorf("-ips must be at least 1")
	}
	perIP := (count + ips - 1) / ips
	if port != 0 && port+perIP-1 > 65535 {
		return nil, fmt.Errorf("-port %d with %d ports per address goes past 65535: use more -ips", port, perIP)
	}
	var out []string
	for i := 0; i < count; i++ {
		a := ip
		for k := 0; k < i%ips; k++ {
			a = a.Next()
		}
		p := 0
		if port != 0 {
			p = port + i/ips
		}
		out = append(out, netip.AddrPortFrom(a, uint16(p)).String())
	}
	return out, nil
}

func main() {
	count := flag.Int("count", 100, "targets to serve (with -first-ip/-ips/-port)")
	firstIP := flag.String("first-ip", "127.0.0.1", "first loopback address")
	ips := flag.Int("ips", 1, "consecutive addresses to spread the targets over")
	port := flag.Int("port", 0, "first port on each address (0: ephemeral ports)")
	addrFile := flag.String("addr-file", "", "serve exactly these host:port lines (optionally `host:port kind`) instead")
	control := flag.String("control", "127.0.0.1:0", "control address (counts, targets)")
	mix := flag.String("mix", "healthy:50,sawtooth:15,burst:10,heap-leak:8,goroutine-leak:6,nonheap-leak:6,finalizer-leak:5", "kind:weight list")
	records := flag.Int("records", 60, "allocation sites (records) in each heap profile")
	metrics := flag.Float64("metrics-fraction", 1.0, "fraction of targets serving /metrics (others: 404)")
	speed := flag.Float64("speed", 1.0, "simulated seconds per real second")
	heapLeak := flag.Float64("heap-leak-rate", 256*kib, "heap-leak: bytes per simulated second")
	gLeak := flag.Float64("goroutine-leak-rate", 4, "goroutine-leak: goroutines per simulated second")
	nhLeak := flag.Float64("nonheap-leak-rate", 256*kib, "nonheap-leak: bytes per simulated second")
	maxDump := flag.Int("max-dump-goroutines", 20000, "goroutine?debug=2 lists at most this many")
	flag.Parse()

	mixPlan, err := parseMix(*mix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(2)
	}
	f := &fleet{
		targets: map[string]*target{}, mix: mixPlan, records: *records, metrics: *metrics, speed: *speed,
		rates: rates{*heapLeak, *gLeak, *nhLeak, 20}, start: time.Now(), maxDump: *maxDump,
		bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}, noMetrics: map[string]bool{},
	}
	f.startNano = f.start.UnixNano()
	f.server = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	var cpu bytes.Buffer
	if err := pprof.StartCPUProfile(&cpu); err == nil {
		time.Sleep(50 * time.Millisecond)
		pprof.StopCPUProfile()
	}
	f.cpuProf = cpu.Bytes()

	type want struct{ addr, kind string }
	var wants []want
	if *addrFile != "" {
		data, err := os.ReadFile(*addrFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim: -addr-file:", err)
			os.Exit(2)
		}
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			w := want{addr: fields[0]}
			if len(fields) > 1 {
				w.kind = fields[1]
			}
			wants = append(wants, w)
		}
	} else {
		addrs, err := planAddresses(*firstIP, *ips, *count, *port)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(2)
		}
		for _, a := range addrs {
			wants = append(wants, want{addr: a})
		}
	}
	for _, w := range wants {
		if _, err := f.add(w.addr, w.kind); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim: listen:", err)
			os.Exit(1)
		}
	}
	ctl, err := net.Listen("tcp", *control)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim: -control:", err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(ctl, f.control()) }()
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"control": ctl.Addr().String(), "targets": f.infos()}); err != nil {
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
