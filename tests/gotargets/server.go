package main

import (
	"bytes"
	"crypto/subtle"
	"expvar"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// processStart is what client_golang's process collector exports as process_start_time_seconds.
var processStart = time.Now()

// newHandler builds the target's own mux (never DefaultServeMux, so nothing is exposed by accident).
func newHandler(cfg config) http.Handler {
	handler := newAuthHandler(cfg)
	if !cfg.logRequests {
		return handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stderr, "request %s %s\n", r.Method, r.URL.RequestURI())
		handler.ServeHTTP(w, r)
	})
}

func newAuthHandler(cfg config) http.Handler {
	mux := http.NewServeMux()
	base := strings.TrimRight(cfg.prefix, "/") + "/"
	if !strings.HasPrefix(base, "/") {
		base = "/" + base
	}
	mux.HandleFunc(base, pprofDispatch(base))
	if base != "/" {
		bare := strings.TrimSuffix(base, "/")
		mux.HandleFunc(bare, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, base, http.StatusMovedPermanently)
		})
	}
	if cfg.expvar {
		mux.Handle("/debug/vars", expvar.Handler())
	}
	if cfg.metrics {
		mux.HandleFunc("/metrics", serveMetrics)
	}
	if cfg.token == "" {
		return mux
	}
	want := []byte("Bearer " + cfg.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gotarget"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// pprofDispatch routes under any prefix: pprof.Index only recognises "/debug/pprof/<name>", so named
// profiles go straight to pprof.Handler, which honours debug, gc and seconds itself.
func pprofDispatch(base string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, base)
		switch name {
		case "":
			pprof.Index(w, r)
		case "cmdline":
			pprof.Cmdline(w, r)
		case "profile":
			pprof.Profile(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			pprof.Handler(name).ServeHTTP(w, r)
		}
	}
}

type promMetric struct {
	name, help, kind string
	value            uint64
}

// runtimeMetricsExported maps runtime/metrics names (Go 1.26 for the finalizer ones) to the names
// client_golang would give them; absent metrics are skipped, so older toolchains still build and serve.
var runtimeMetricsExported = []struct{ rm, name, help, kind string }{
	{"/gc/finalizers/queued:finalizers", "go_gc_finalizers_queued_finalizers_total", "Total finalizers queued for execution.", "counter"},
	{"/gc/finalizers/executed:finalizers", "go_gc_finalizers_executed_finalizers_total", "Total finalizers executed.", "counter"},
	{"/gc/heap/live:bytes", "go_gc_heap_live_bytes", "Heap memory occupied by live objects that were marked by the previous GC.", "gauge"},
	{"/gc/heap/objects:objects", "go_gc_heap_objects_objects", "Number of objects, live or unswept, occupying heap memory.", "gauge"},
}

var supportedRuntimeMetrics = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range metrics.All() {
		m[d.Name] = true
	}
	return m
}()

func serveMetrics(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	threads, _ := runtime.ThreadCreateProfile(nil)
	out := []promMetric{
		{"process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", uint64(residentBytes())},
		{"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", uint64(processStart.Unix())},
		{"go_goroutines", "Number of goroutines that currently exist.", "gauge", uint64(runtime.NumGoroutine())},
		{"go_threads", "Number of OS threads created.", "gauge", uint64(threads)},
		{"go_memstats_sys_bytes", "Number of bytes obtained from system.", "gauge", uint64(ms.Sys)},
		{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", "gauge", uint64(ms.HeapReleased)},
		{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", "gauge", uint64(ms.HeapAlloc)},
	}
	var samples []metrics.Sample
	var which []int
	for i, e := range runtimeMetricsExported {
		if supportedRuntimeMetrics[e.rm] {
			samples = append(samples, metrics.Sample{Name: e.rm})
			which = append(which, i)
		}
	}
	metrics.Read(samples)
	for j, s := range samples {
		e := runtimeMetricsExported[which[j]]
		if s.Value.Kind() == metrics.KindUint64 {
			out = append(out, promMetric{e.name, e.help, e.kind, uint64(s.Value.Uint64())})
		}
	}
	var buf bytes.Buffer
	for _, m := range out {
		fmt.Fprintf(&buf, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.kind, m.name, m.value)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// residentBytes reads the current RSS the way the Prometheus process collector does (statm × page size).
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
