package main

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
)

// Kinds of simulated targets. Each is a Go service whose numbers follow one shape over (simulated) time.
const (
	kindHealthy       = "healthy"        // flat live heap with a little noise
	kindSawtooth      = "sawtooth"       // a cache that fills and is flushed every 10 min; GC saw-tooth in HeapAlloc
	kindBurst         = "burst"          // every 5 min a 30 s burst of +256 MiB live heap and +1500 goroutines
	kindHeapLeak      = "heap-leak"      // one allocation site keeps growing (-heap-leak-rate bytes/s)
	kindGoroutineLeak = "goroutine-leak" // goroutines blocked forever pile up (-goroutine-leak-rate per s)
	kindNonHeapLeak   = "nonheap-leak"   // RSS outside the Go heap grows (cgo, mmap): -nonheap-leak-rate bytes/s
	kindFinalizerLeak = "finalizer-leak" // the finalizer goroutine is stuck; queued - executed grows
)

var allKinds = []string{kindHealthy, kindSawtooth, kindBurst, kindHeapLeak, kindGoroutineLeak, kindNonHeapLeak, kindFinalizerLeak}

const (
	kib = 1024
	mib = 1024 * kib
	// memProfileRate is Go's default runtime.MemProfileRate (512 KiB); the header prints 2*rate.
	memProfileRate  = 512 * kib
	gcPeriodSeconds = 20.0
)

type rates struct {
	heapLeakBytesPerSecond    float64
	goroutinesPerSecond       float64
	nonHeapLeakBytesPerSecond float64
	finalizersPerSecond       float64
}

// site is one allocation stack of a simulated heap profile: a fixed share of the live heap with a fixed
// average object size, and the frame lines printed under its record (rendered once, at start).
type site struct {
	share   float64
	objSize float64
	pcs     string
	frames  string
	churn   float64 // allocated bytes per second through this site that became garbage
}

// target is one simulated Go process. Everything it serves is a function of simulated time, so many
// scrapes cost the simulator almost nothing and every reader of the same instant sees the same numbers.
type target struct {
	addr         string
	kind         string
	seed         uint64
	baseHeap     float64
	baseRoutines float64
	baseNonHeap  float64
	phase        float64
	gcBase       int64
	sites        []site
	leakSite     int
	counts       counters
	mu           sync.Mutex
	maxRSS       float64
	frees        int64
}

// state is the target's numbers at one simulated instant.
type state struct {
	t           float64 // simulated seconds since the simulator started
	live        float64 // live heap bytes as of the last GC
	leak        float64 // bytes of `live` held by the leaking site
	heapAlloc   float64
	goroutines  int64
	leaked      int64 // goroutines blocked in the leak
	nonHeap     float64
	numGC       int64
	finQueued   int64
	finExecuted int64
}

func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// unit returns a deterministic number in [0, 1) from the seed and a label.
func unit(seed uint64, label string, n int64) float64 {
	return float64(hash64(fmt.Sprint(seed), label, fmt.Sprint(n))%1_000_000) / 1_000_000
}

var funcNames = []string{
	"encoding/json.(*decodeState).object", "bytes.growSlice", "strings.(*Builder).grow",
	"net/http.(*conn).readRequest", "bufio.NewReaderSize", "google.golang.org/protobuf/proto.UnmarshalOptions.unmarshal",
	"github.com/acme/shop/cart.(*Store).Load", "github.com/acme/shop/api.(*Server).handleCheckout",
	"github.com/acme/shop/cache.(*LRU).Add", "github.com/acme/shop/db.(*Rows).Scan", "database/sql.(*DB).conn",
	"runtime.malg", "compress/flate.NewWriter", "regexp.compile", "sync.(*Pool).Get",
	"github.com/acme/shop/session.(*Manager).retain", "github.com/acme/shop/metrics.(*Registry).Observe",
}

func newTarget(addr, kind string, records int) *target {
	seed := hash64(addr)
	t := &target{addr: addr, kind: kind, seed: seed}
	t.baseHeap = (20 + 180*unit(seed, "heap", 0)) * mib
	t.baseRoutines = 50 + math.Floor(450*unit(seed, "goroutines", 0))
	t.baseNonHeap = (6 + 10*unit(seed, "nonheap", 0)) * mib
	t.phase = 3600 * unit(seed, "phase", 0)
	t.gcBase = 300 + int64(5000*unit(seed, "gc", 0)) // long-running: PauseNs/PauseEnd are full
	total := 0.0
	for r := 0; r < records; r++ {
		depth := 4 + int(12*unit(seed, "depth", int64(r)))
		var pcs, frames strings.Builder
		for d := 0; d < depth; d++ {
			pc := 0x400000 + (hash64(fmt.Sprint(seed), fmt.Sprint(r), fmt.Sprint(d)) % 0x300000)
			fn := funcNames[(r*7+d*3)%len(funcNames)]
			fmt.Fprintf(&pcs, " %#x", pc)
			fmt.Fprintf(&frames, "#\t%#x\t%s+%#x\t\t/src/acme/shop/%s.go:%d\n", pc-1, fn, 0x20+d*0x13, strings.ReplaceAll(fn, "/", "_")[:8], 40+d*17)
		}
		sizes := []float64{16, 48, 112, 512, 4096, 8192, 32768, 262144}
		s := site{
			share:   0.1 + unit(seed, "share", int64(r)),
			objSize: sizes[int(float64(len(sizes))*unit(seed, "size", int64(r)))],
			pcs:     pcs.String(),
			frames:  frames.String(),
			churn:   (1 + 20*unit(seed, "churn", int64(r))) * kib,
		}
		if r%5 == 4 {
			s.share = 0 // only allocated, nothing live: `0: 0 [N: M]` records are common in real profiles
		}
		total += s.share
		t.sites = append(t.sites, s)
	}
	for i := range t.sites {
		t.sites[i].share /= total
	}
	t.leakSite = int(float64(records) * unit(seed, "leak", 0))
	return t
}

// at computes the target's state at simulated time `t` (seconds since the simulator started).
func (tg *target) at(t float64, r rates) state {
	s := state{t: t}
	pt := t + tg.phase // each target is at its own point of its cycles
	noise := (unit(tg.seed, "noise", int64(t/15)) - 0.5) * 0.02
	s.live = tg.baseHeap * (1 + noise)
	s.goroutines = int64(tg.baseRoutines)
	s.nonHeap = tg.baseNonHeap
	switch tg.kind {
	case kindSawtooth:
		frac := math.Mod(pt, 600) / 600
		s.live = tg.baseHeap * (1 + 0.8*frac + noise)
	case kindBurst:
		if math.Mod(pt, 300) < 30 {
			s.live += 256 * mib
			s.goroutines += 1500
		}
	case kindHeapLeak:
		s.leak = r.heapLeakBytesPerSecond * t
		s.live += s.leak
	case kindGoroutineLeak:
		s.leaked = int64(r.goroutinesPerSecond * t)
		s.goroutines += s.leaked
		s.leak = float64(s.leaked) * 1024 // each blocked goroutine keeps a little heap too
		s.live += s.leak
	case kindNonHeapLeak:
		s.nonHeap += r.nonHeapLeakBytesPerSecond * t
	}
	s.numGC = tg.gcBase + int64(t/gcPeriodSeconds)
	gcFrac := math.Mod(t, gcPeriodSeconds) / gcPeriodSeconds
	s.heapAlloc = s.live * (1 + gcFrac) // GOGC=100: allocation runs up to twice the live heap, then GC
	s.finQueued = int64(t * r.finalizersPerSecond)
	s.finExecuted = s.finQueued
	if tg.kind == kindFinalizerLeak {
		s.finExecuted = int64(math.Min(float64(s.finQueued), 5))
		s.live += float64(s.finQueued-s.finExecuted) * 4096
	}
	return s
}

// plan assigns kinds to target indexes from weights like "healthy:50,heap-leak:10": deterministic, spread.
type plan []string

func parseMix(text string) (plan, error) {
	var p plan
	for _, part := range strings.Split(text, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("-mix: %q is not kind:weight", part)
		}
		known := false
		for _, k := range allKinds {
			known = known || k == name
		}
		if !known {
			return nil, fmt.Errorf("-mix: unknown kind %q (known: %s)", name, strings.Join(allKinds, ", "))
		}
		var w int
		if _, err := fmt.Sscan(weight, &w); err != nil || w < 0 || w > 1000 {
			return nil, fmt.Errorf("-mix: weight of %q must be 0..1000", name)
		}
		for i := 0; i < w; i++ {
			p = append(p, name)
		}
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("-mix: no kind has a weight")
	}
	// Smooth weighted round-robin: any run of consecutive targets holds the kinds in about their proportions.
	weights := map[string]int{}
	var names []string
	for _, k := range p {
		if weights[k] == 0 {
			names = append(names, k)
		}
		weights[k]++
	}
	current := map[string]int{}
	out := make(plan, len(p))
	for i := range out {
		best := ""
		for _, k := range names {
			current[k] += weights[k]
			if best == "" || current[k] > current[best] {
				best = k
			}
		}
		current[best] -= len(p)
		out[i] = best
	}
	return out, nil
}

func (p plan) kind(i int) string { return p[i%len(p)] }
