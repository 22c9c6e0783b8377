// Command gotarget is a real Go service with switchable memory behaviours (healthy, goroutine, heap,
// cgo and finalizer leaks) that MemoryWatch's test suite watches through net/http/pprof, expvar and
// a hand-written Prometheus /metrics endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	defaultMaxBytes = 1 << 30
	defaultMaxCount = 200000
)

type config struct {
	listen      string
	modes       map[string]bool
	rate        float64
	max         float64
	leakAfter   time.Duration
	ramp        time.Duration
	churn       float64
	profileRate int
	startupStep int64
	prefix      string
	token       string
	tlsCert     string
	tlsKey      string
	expvar      bool
	metrics     bool
	logRequests bool
}

var knownModes = []string{
	"healthy", "goroutine-leak", "heap-leak", "cgo-leak", "finalizer-leak",
	"cache-warmup", "load-ramp", "step-leak", "one-off", "map-high-water", "memlimit-sawtooth",
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("gotarget", flag.ContinueOnError)
	var cfg config
	var modeList string
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:6060", "address to serve on")
	fs.StringVar(&modeList, "mode", "healthy", "comma-separated behaviours: "+strings.Join(knownModes, ","))
	fs.Float64Var(&cfg.rate, "rate", 0, "leak rate per second in the mode's unit (goroutines, bytes, objects); 0 = mode default")
	fs.Float64Var(&cfg.max, "max", 0, "cap on the total leaked per mode, in the mode's unit; 0 = 1GiB of bytes or 200000 goroutines/objects")
	fs.DurationVar(&cfg.leakAfter, "leak-after", 0, "delay before leaking starts")
	fs.IntVar(&cfg.profileRate, "mem-profile-rate", -1, "set runtime.MemProfileRate at start (0 turns heap profiling off); -1 leaves Go's default")
	fs.Float64Var(&cfg.churn, "churn", -1, "bytes per second of short-lived garbage (a service that allocates, so it collects on its own); -1 = mode default (16 MiB/s for heap-leak and finalizer-leak, which leak while serving like a real service, else 0)")
	fs.DurationVar(&cfg.ramp, "ramp", 15*time.Second, "time scale of the look-alike modes (warm-up, load ramp, step period, saw-tooth period)")
	fs.Int64Var(&cfg.startupStep, "startup-step", 32<<20, "bytes retained once at start-up in healthy mode")
	fs.StringVar(&cfg.prefix, "prefix", "/debug/pprof", "path prefix for net/http/pprof")
	fs.StringVar(&cfg.token, "token", "", "require Authorization: Bearer TOKEN on every endpoint")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "private key for -tls-cert (PEM)")
	fs.BoolVar(&cfg.expvar, "expvar", false, "also serve expvar at /debug/vars")
	fs.BoolVar(&cfg.metrics, "metrics", false, "also serve Prometheus text at /metrics")
	fs.BoolVar(&cfg.logRequests, "log-requests", false, "print every request line (path and query) to stderr, so tests see what a watcher asked")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.modes = map[string]bool{}
	for _, m := range strings.Split(modeList, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		ok := false
		for _, k := range knownModes {
			ok = ok || k == m
		}
		if !ok {
			return cfg, fmt.Errorf("unknown mode %q (known: %s)", m, strings.Join(knownModes, ","))
		}
		cfg.modes[m] = true
	}
	if cfg.churn < 0 {
		cfg.churn = 0
		if cfg.modes["heap-leak"] || cfg.modes["finalizer-leak"] {
			cfg.churn = 16 << 20
		}
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return cfg, errors.New("-tls-cert and -tls-key go together")
	}
	if cfg.rate < 0 || cfg.max < 0 {
		return cfg, errors.New("-rate and -max must not be negative")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "gotarget:", err)
		os.Exit(2)
	}
	if cfg.profileRate >= 0 {
		runtime.MemProfileRate = cfg.profileRate // as early as possible, as the runtime docs ask
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotarget:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: newHandler(cfg), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	startBehaviours(ctx, cfg)

	serveErr := make(chan error, 1)
	scheme := "http"
	go func() {
		if cfg.tlsCert != "" {
			serveErr <- srv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	fmt.Printf("listening on %s://%s\n", scheme, ln.Addr())

	select {
	case err := <-serveErr:
		fmt.Fprintln(os.Stderr, "gotarget: serve:", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// Leaked goroutines stay parked forever; Shutdown only waits for HTTP connections.
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintln(os.Stderr, "gotarget: shutdown:", err)
	}
	fmt.Fprintln(os.Stderr, "gotarget: stopped")
}
