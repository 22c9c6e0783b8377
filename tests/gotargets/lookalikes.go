package main

import (
	"context"
	"math"
	"math/rand"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Healthy services that only look leaky for a while, and leaks that come in steps. Each is started by its
// mode; -rate, -max and -ramp size them (see modeHelp).

const entryBytes = 4096

var (
	lookalikeSink sync.Map // keeps look-alike data reachable; keyed by mode
	churnSink     atomic.Pointer[[]byte]
	inflight      sync.Map // request id -> its buffer, while the request is served
	requestIDs    atomic.Int64
)

// since returns the seconds since *last (at most one: a process starved for longer catches up one second,
// not a burst) and moves *last to now. The look-alikes pace their work by the clock, not by ticks received:
// a Ticker drops ticks while the process is starved of CPU, which would stretch their shapes.
func since(last *time.Time) float64 {
	now := time.Now()
	dt := math.Min(now.Sub(*last).Seconds(), 1)
	*last = now
	return dt
}

func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 512 {
		b[i] = 1
	}
	return b
}

// cacheWarmup fills a cache whose insert rate falls as its hit ratio rises: rate(t) = rate·e^(−t/ramp)
// bytes per second, so it holds about rate·ramp bytes once warm, then evicts as fast as it inserts.
//
//go:noinline
func cacheWarmup(ctx context.Context, rate float64, ramp time.Duration) {
	capacity := int(rate * ramp.Seconds() / entryBytes)
	cache := make(map[int][]byte)
	lookalikeSink.Store("cache-warmup", &cache)
	var mu sync.Mutex
	start := time.Now()
	last := start
	ticker := time.NewTicker(leakStep)
	defer ticker.Stop()
	owed, next := 0.0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			t := time.Since(start).Seconds()
			owed += math.Max(rate*math.Exp(-t/ramp.Seconds()), rate*0.02) * since(&last) / entryBytes
		}
		mu.Lock()
		for ; owed >= 1; owed-- {
			cache[next] = touched(entryBytes)
			next++
			if len(cache) > capacity {
				delete(cache, next-capacity-1) // the oldest entry
			}
		}
		mu.Unlock()
	}
}

// loadRamp serves a load that ramps up over `ramp`, holds for ramp/2 and falls over ramp/2, then stays low:
// each request is a goroutine living 1–2 s that holds a 16 KiB buffer. `max` is the peak concurrency.
//
//go:noinline
func loadRamp(ctx context.Context, peak float64, ramp time.Duration) {
	start := time.Now()
	last := start
	ticker := time.NewTicker(leakStep)
	defer ticker.Stop()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			t, r := time.Since(start).Seconds(), ramp.Seconds()
			level := 0.05
			switch {
			case t < r:
				level = math.Max(level, t/r)
			case t < 1.5*r:
				level = 1
			case t < 2*r:
				level = math.Max(level, 1-(t-1.5*r)/(0.5*r))
			}
			owed += peak * level * since(&last) / 1.5 // Little's law: concurrency / mean lifetime
		}
		for ; owed >= 1; owed-- {
			go handleRequest()
		}
	}
}

//go:noinline
func handleRequest() {
	id := requestIDs.Add(1)
	inflight.Store(id, touched(16<<10)) // the request's buffer lives on the heap while it is served
	time.Sleep(time.Duration(1000+rand.Intn(1000)) * time.Millisecond)
	inflight.Delete(id)
}

// stepLeak retains rate·period bytes at once every period (one step per resync).
//
//go:noinline
func stepLeak(ctx context.Context, rate float64, period time.Duration) {
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		retainRecords(int64(rate * period.Seconds()))
	}
}

// oneOffAllocation keeps one large buffer, allocated once after `after`.
//
//go:noinline
func oneOffAllocation(ctx context.Context, size float64, after time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(after):
	}
	lookalikeSink.Store("one-off", touched(int(size)))
}

// mapHighWater fills a map with `size` bytes of entries over `ramp` (a traffic spike), then deletes all but
// a few: Go maps never shrink, so the live heap stays at the high-water mark.
//
//go:noinline
func mapHighWater(ctx context.Context, size float64, ramp time.Duration) {
	m := make(map[int][128]byte)
	lookalikeSink.Store("map-high-water", &m)
	entries := int(size / 160)
	start := time.Now()
	ticker := time.NewTicker(leakStep)
	defer ticker.Stop()
	for filled := 0; filled < entries; {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		want := int(float64(entries) * math.Min(1, time.Since(start).Seconds()/ramp.Seconds()))
		for ; filled < want; filled++ {
			m[filled] = [128]byte{1}
		}
	}
	for k := range m {
		if k > 100 {
			delete(m, k)
		}
	}
}

// memLimitSawtooth runs under a GOMEMLIMIT and keeps a batch that grows to `size` bytes over `ramp`, then
// drops it (a compaction or snapshot): the live heap saw-tooths around a flat floor.
//
//go:noinline
func memLimitSawtooth(ctx context.Context, size float64, ramp time.Duration) {
	debug.SetMemoryLimit(int64(4 * size))
	var batch [][]byte
	steps := int(ramp / leakStep)
	chunk := int(size) / steps
	start, cycle := time.Now(), -1
	ticker := time.NewTicker(leakStep)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		phase := time.Since(start).Seconds() / ramp.Seconds()
		if int(phase) != cycle { // a new tooth: drop the batch
			cycle, batch = int(phase), nil
		}
		for want := 1 + int(float64(steps)*(phase-math.Floor(phase))); len(batch) < want; {
			batch = append(batch, touched(chunk))
		}
		lookalikeSink.Store("memlimit", batch)
	}
}

// churnAt makes `rate` bytes per second of garbage in 64 KiB buffers, like any service serving requests.
//
//go:noinline
func churnAt(ctx context.Context, rate float64) {
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	owed, last := 0.0, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for owed += rate * since(&last); owed >= 64<<10; owed -= 64 << 10 {
			buf := make([]byte, 64<<10)
			buf[len(buf)-1] = 1
			churnSink.Store(&buf) // escapes, so it is heap garbage (a local 64 KiB buffer may live on the stack)
		}
	}
}
