package main

import (
	"context"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Leaking happens in small steps this often, so growth looks smooth to a scraper.
const leakStep = 100 * time.Millisecond

// Default rates per mode, in the mode's unit per second.
var defaultRates = map[string]float64{
	"goroutine-leak": 100,
	"heap-leak":      1 << 20,
	"cgo-leak":       1 << 20,
	"finalizer-leak": 1000,
}

var byteModes = map[string]bool{"heap-leak": true, "cgo-leak": true}

func startBehaviours(ctx context.Context, cfg config) {
	if cfg.modes["healthy"] {
		startHealthy(ctx, cfg.startupStep)
	}
	startLookalikes(ctx, cfg)
	leakers := map[string]func(n int64){
		"goroutine-leak": leakGoroutines,
		"heap-leak":      retainRecords,
		"cgo-leak":       leakCMemory,
		"finalizer-leak": leakFinalizerObjects,
	}
	for mode, fn := range leakers {
		if !cfg.modes[mode] {
			continue
		}
		rate := cfg.rate
		if rate == 0 {
			rate = defaultRates[mode]
		}
		limit := cfg.max
		if limit == 0 {
			limit = defaultMaxCount
			if byteModes[mode] {
				limit = defaultMaxBytes
			}
		}
		go runLeaker(ctx, cfg.leakAfter, rate, int64(limit), fn)
	}
}

// runLeaker calls leak with whole units, carrying fractions between steps, until limit is reached.
func runLeaker(ctx context.Context, after time.Duration, rate float64, limit int64, leak func(n int64)) {
	if after > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(after):
		}
	}
	ticker := time.NewTicker(leakStep)
	defer ticker.Stop()
	var owed float64
	var total int64
	last := time.Now()
	for total < limit {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			owed += rate * now.Sub(last).Seconds()
			last = now
		}
		n := int64(owed)
		if n > limit-total {
			n = limit - total
		}
		if n <= 0 {
			continue
		}
		owed -= float64(n)
		total += n
		leak(n)
	}
}

// ---- goroutine-leak ----

// neverSent is global and never closed, so every receiver on it waits forever.
var neverSent = make(chan struct{})

//go:noinline
func leakGoroutines(n int64) {
	for i := int64(0); i < n; i++ {
		go blockForever(neverSent)
	}
}

//go:noinline
func blockForever(ch <-chan struct{}) {
	<-ch
}

// ---- heap-leak ----

const recordPayloadBytes = 4096

type record struct {
	id      int64
	created time.Time
	payload []byte
}

var (
	retainedMu      sync.Mutex
	retainedRecords []*record
	retainCarry     int64
)

//go:noinline
func retainRecords(n int64) {
	retainedMu.Lock()
	defer retainedMu.Unlock()
	retainCarry += n
	for retainCarry >= recordPayloadBytes {
		retainCarry -= recordPayloadBytes
		p := make([]byte, recordPayloadBytes)
		for i := range p {
			p[i] = byte(i) // touched, so the pages are resident and not just reserved
		}
		retainedRecords = append(retainedRecords, &record{id: int64(len(retainedRecords)), created: time.Now(), payload: p})
	}
}

// ---- finalizer-leak ----

type finalizable struct {
	id      int64
	payload [1024]byte
}

var (
	stuckOnce      sync.Once
	stuckForever   = make(chan struct{})
	finalizedCount atomic.Int64
)

//go:noinline
func stuckFinalizer(f *finalizable) {
	_ = f.id
	<-stuckForever
}

//go:noinline
func releaseFinalizable(f *finalizable) {
	_ = f.id
	finalizedCount.Add(1)
}

//go:noinline
func leakFinalizerObjects(n int64) {
	stuckOnce.Do(func() {
		first := &finalizable{id: -1}
		runtime.SetFinalizer(first, stuckFinalizer)
		first = nil
		// One early collection queues the stuck finalizer at once instead of whenever the heap grows.
		go runtime.GC()
	})
	for i := int64(0); i < n; i++ {
		f := &finalizable{id: i}
		f.payload[0] = byte(i)
		runtime.SetFinalizer(f, releaseFinalizable)
	}
}

// ---- healthy ----

var (
	startupBuffer []byte
	cacheMu       sync.Mutex
	cache         = map[int64][]byte{}
	sinkBytes     atomic.Int64
)

func startHealthy(ctx context.Context, startupStep int64) {
	if startupStep > 0 {
		startupBuffer = make([]byte, startupStep)
		for i := 0; i < len(startupBuffer); i += 4096 {
			startupBuffer[i] = 1
		}
	}
	go churnGarbage(ctx)
	go burstWorkers(ctx)
	go boundedCache(ctx)
}

// churnGarbage makes short-lived garbage at about 3 MB/s: a saw-tooth heap, nothing retained.
//
//go:noinline
func churnGarbage(ctx context.Context) {
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		buf := make([]byte, 64<<10)
		buf[len(buf)-1] = 1
		sinkBytes.Add(int64(buf[len(buf)-1]))
	}
}

// burstWorkers starts a burst of goroutines every few seconds; each does a little work and exits.
//
//go:noinline
func burstWorkers(ctx context.Context) {
	ticker := time.NewTicker(3 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		var wg sync.WaitGroup
		for i := 0; i < 300; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				handleBurstItem()
			}()
		}
		wg.Wait()
	}
}

//go:noinline
func handleBurstItem() {
	buf := make([]byte, 16<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	time.Sleep(time.Duration(200+rand.Intn(600)) * time.Millisecond)
	sinkBytes.Add(int64(buf[100]))
}

// boundedCache grows to a cap (4 MiB) and is trimmed back every few seconds, like an LRU that works.
//
//go:noinline
func boundedCache(ctx context.Context) {
	const maxEntries, keepEntries = 512, 128
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	var next int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cacheMu.Lock()
		cache[next] = make([]byte, 8<<10)
		next++
		if len(cache) > maxEntries {
			for k := range cache {
				if k < next-keepEntries {
					delete(cache, k)
				}
			}
		}
		cacheMu.Unlock()
	}
}

// startLookalikes starts the look-alike and step-leak modes (lookalikes.go); -rate and -max size them in
// bytes (or peak goroutines for load-ramp), -ramp sets their time scale, -leak-after delays one-off.
func startLookalikes(ctx context.Context, cfg config) {
	or := func(v, d float64) float64 {
		if v > 0 {
			return v
		}
		return d
	}
	if cfg.churn > 0 {
		go churnAt(ctx, cfg.churn)
	}
	if cfg.modes["cache-warmup"] {
		go cacheWarmup(ctx, or(cfg.rate, 4<<20), cfg.ramp)
	}
	if cfg.modes["load-ramp"] {
		go loadRamp(ctx, or(cfg.max, 2000), cfg.ramp)
	}
	if cfg.modes["step-leak"] {
		go stepLeak(ctx, or(cfg.rate, 1<<20), cfg.ramp)
	}
	if cfg.modes["one-off"] {
		go oneOffAllocation(ctx, or(cfg.max, 64<<20), cfg.leakAfter)
	}
	if cfg.modes["map-high-water"] {
		go mapHighWater(ctx, or(cfg.max, 64<<20), cfg.ramp)
	}
	if cfg.modes["memlimit-sawtooth"] {
		go memLimitSawtooth(ctx, or(cfg.max, 48<<20), cfg.ramp)
	}
}
