// Command manyports serves the real net/http/pprof index and heap?debug=1 of its own runtime on many
// loopback ports at once, so a few small processes stand in for hundreds of scrape targets in
// hack/bench-scrape. It prints the ports as one JSON array on stdout once every listener is up.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

var retained [][]byte

// allocAt keeps an allocation alive at a call depth of `depth`, so each depth is a distinct stack and
// heap?debug=1 has as many records as a modest real service (tens to hundreds).
//
//go:noinline
func allocAt(depth, size int) {
	if depth > 0 {
		allocAt(depth-1, size)
		return
	}
	retained = append(retained, make([]byte, size))
}

func main() {
	ports := flag.Int("ports", 250, "how many loopback ports to serve on")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	depths := flag.Int("stacks", 60, "distinct allocation stacks to keep alive")
	flag.Parse()

	// Sample every 4 KiB so the retained allocations show up as records, like a service with a real heap.
	runtime.MemProfileRate = 4096
	for d := 0; d < *depths; d++ {
		for _, size := range []int{512, 8192, 65536} {
			for i := 0; i < 4; i++ {
				allocAt(d, size)
			}
		}
	}
	runtime.GC()
	runtime.GC() // the heap profile publishes what the previous cycle saw

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	var listening []int
	for i := 0; i < *ports; i++ {
		ln, err := net.Listen("tcp", *host+":0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "manyports:", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		listening = append(listening, ln.Addr().(*net.TCPAddr).Port)
	}
	if err := json.NewEncoder(os.Stdout).Encode(listening); err != nil {
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	runtime.KeepAlive(retained)
}
