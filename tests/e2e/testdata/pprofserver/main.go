// pprofserver is the e2e harness's stand-in for a Go service: it serves net/http/pprof on -listen,
// plus /info (its pid, args, environment and working directory as JSON) so tests can see exactly
// what the pod runner gave it. Standard library only.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:6060", "address to serve pprof and /info on")
	flag.Parse()

	http.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		wd, _ := os.Getwd()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"pid":  os.Getpid(),
			"args": os.Args,
			"env":  os.Environ(),
			"cwd":  wd,
		})
	})
	srv := &http.Server{Addr: *listen}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("signal received, shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("pid %d serving pprof on http://%s/debug/pprof/", os.Getpid(), *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("stopped")
}
