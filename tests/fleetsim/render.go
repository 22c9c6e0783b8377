package main

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
)

// The page net/http/pprof's Index writes (Go 1.26), with this target's counts.
const indexHead = `<html>
<head>
<title>/debug/pprof/</title>
<style>
.profile-name{
	display:inline-block;
	width:6rem;
}
</style>
</head>
<body>
/debug/pprof/
<br>
<p>Set debug=1 as a query parameter to export in legacy text format</p>
<br>
Types of profiles available:
<table>
<thead><td>Count</td><td>Profile</td></thead>
`

const indexTail = `</table>
<a href="goroutine?debug=2">full goroutine stack dump</a>
<br>
<p>
Profile Descriptions:
<ul>
<li><div class=profile-name>allocs: </div> A sampling of all past memory allocations</li>
<li><div class=profile-name>block: </div> Stack traces that led to blocking on synchronization primitives</li>
<li><div class=profile-name>cmdline: </div> The command line invocation of the current program</li>
<li><div class=profile-name>goroutine: </div> Stack traces of all current goroutines. Use debug=2 as a query parameter to export in the same format as an unrecovered panic.</li>
<li><div class=profile-name>heap: </div> A sampling of memory allocations of live objects. You can specify the gc GET parameter to run GC before taking the heap sample.</li>
<li><div class=profile-name>mutex: </div> Stack traces of holders of contended mutexes</li>
<li><div class=profile-name>profile: </div> CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile file, use the go tool pprof command to investigate the profile.</li>
<li><div class=profile-name>symbol: </div> Maps given program counters to function names. Counters can be specified in a GET raw query or POST body, multiple counters are separated by &#39;+&#39;.</li>
<li><div class=profile-name>threadcreate: </div> Stack traces that led to the creation of new OS threads</li>
<li><div class=profile-name>trace: </div> A trace of execution of the current program. You can specify the duration in the seconds GET parameter. After you get the trace file, use the go tool trace command to investigate the trace.</li>
</ul>
</p>
</body>
</html>`

func renderIndex(b *bytes.Buffer, tg *target, s state) {
	b.WriteString(indexHead)
	rows := []struct {
		name  string
		count int64
	}{
		{"allocs", int64(len(tg.sites))}, {"block", 0}, {"cmdline", 0}, {"goroutine", s.goroutines},
		{"heap", int64(len(tg.sites))}, {"mutex", 0}, {"profile", 0}, {"symbol", 0},
		{"threadcreate", 12}, {"trace", 0},
	}
	for _, r := range rows {
		fmt.Fprintf(b, "<tr><td>%d</td><td><a href='%s?debug=1'>%s</a></td></tr>\n", r.count, r.name, r.name)
	}
	b.WriteString(indexTail)
}

// sampled undoes Go's scaleHeapSample: the (count, bytes) a sampling profiler at `rate` would have
// recorded for `bytes` of objects of `objSize`, so that scaling them back gives about `bytes` again.
func sampled(bytesTrue, objSize float64) (int64, int64) {
	if bytesTrue < 1 {
		return 0, 0
	}
	scale := 1 / (1 - math.Exp(-objSize/memProfileRate))
	count := int64(math.Round(bytesTrue / scale / objSize))
	return count, count * int64(objSize)
}

// renderHeap writes heap?debug=1 as runtime/pprof's writeHeapInternal does: header, records with their
// frames, then the MemStats block with full 256-entry PauseNs/PauseEnd arrays.
func renderHeap(b *bytes.Buffer, tg *target, s state, startNanos int64) memstats {
	type rec struct{ ic, ib, ac, ab int64 }
	recs := make([]rec, len(tg.sites))
	var hic, hib, hac, hab int64 // the header's totals
	for i, st := range tg.sites {
		live := st.share * (s.live - s.leak)
		if i == tg.leakSite {
			live += s.leak
		}
		ic, ib := sampled(live, st.objSize)
		ac, ab := sampled(live+st.churn*(s.t+3600), st.objSize)
		if ac < ic {
			ac, ab = ic, ib
		}
		recs[i] = rec{ic, ib, ac, ab}
		hic, hib, hac, hab = hic+ic, hib+ib, hac+ac, hab+ab
	}
	fmt.Fprintf(b, "heap profile: %d: %d [%d: %d] @ heap/%d\n", hic, hib, hac, hab, 2*memProfileRate)
	for i, st := range tg.sites {
		r := recs[i]
		fmt.Fprintf(b, "%d: %d [%d: %d] @%s\n", r.ic, r.ib, r.ac, r.ab, st.pcs)
		b.WriteString(st.frames)
		b.WriteByte('\n')
	}
	ms := tg.memstats(s, startNanos)
	ms.write(b)
	return ms
}

type memstats struct {
	alloc, totalAlloc, sys, mallocs, frees, heapSys, heapIdle, heapInuse, heapReleased, heapObjects int64
	stackInuse, stackSys, mspanInuse, mspanSys, mcacheInuse, mcacheSys, buckHash, gcSys, otherSys   int64
	nextGC, lastGC, numGC, numForced                                                                int64
	pauseNs, pauseEnd                                                                               [256]int64
	gcCPU                                                                                           float64
	maxRSS, rss                                                                                     int64
}

func (tg *target) memstats(s state, startNanos int64) memstats {
	var m memstats
	m.alloc = int64(s.heapAlloc)
	m.heapInuse = int64(s.heapAlloc*1.08) &^ 8191
	m.heapSys = int64(math.Max(float64(m.heapInuse)*1.25, float64(m.heapInuse)+4*mib)) &^ 8191
	m.heapIdle = m.heapSys - m.heapInuse
	m.heapReleased = int64(float64(m.heapIdle)*0.7) &^ 8191
	// Counters only ever grow (a decrease is how the engine recognises a restart): TotalAlloc at a steady
	// allocation rate, and Frees never behind its previous value even when a burst adds live objects.
	m.totalAlloc = 8<<30 + int64((s.t+3600)*(4*tg.baseHeap/gcPeriodSeconds))
	m.mallocs = m.totalAlloc / 96
	tg.mu.Lock()
	tg.frees = max(tg.frees, m.mallocs-int64(s.heapAlloc/96))
	m.frees = min(tg.frees, m.mallocs)
	tg.mu.Unlock()
	m.heapObjects = m.mallocs - m.frees
	m.stackInuse = s.goroutines * 8 * kib
	m.stackSys = m.stackInuse + 512*kib
	m.mspanInuse = m.heapInuse / 200
	m.mspanSys = m.mspanInuse + 16*kib
	m.mcacheInuse, m.mcacheSys = 4592, 16072
	m.buckHash = 1444849
	m.gcSys = m.heapSys / 30
	m.otherSys = 769503
	m.sys = m.heapSys + m.stackSys + m.mspanSys + m.mcacheSys + m.buckHash + m.gcSys + m.otherSys
	m.nextGC = int64(s.live * 2)
	m.numGC = s.numGC
	m.numForced = 3
	simNanos := func(t float64) int64 { return startNanos + int64(t*1e9) }
	lastGCAt := math.Floor(s.t/gcPeriodSeconds) * gcPeriodSeconds
	for k := int64(0); k < 256; k++ { // ring buffer: index (NumGC-1)%256 is the latest
		n := s.numGC - k
		slot := (n + 255) % 256
		m.pauseNs[slot] = 20000 + int64(400000*unit(tg.seed, "pause", n))
		m.pauseEnd[slot] = simNanos(lastGCAt-float64(k)*gcPeriodSeconds) + int64(unit(tg.seed, "end", n)*1e6)
	}
	m.lastGC = m.pauseEnd[(s.numGC+255)%256]
	m.gcCPU = 0.0001 + 0.002*unit(tg.seed, "gccpu", 0)
	m.rss = m.sys - m.heapReleased + int64(s.nonHeap)
	tg.mu.Lock()
	tg.maxRSS = math.Max(tg.maxRSS, float64(m.rss))
	m.maxRSS = int64(tg.maxRSS)
	tg.mu.Unlock()
	return m
}

func writeArray(b *bytes.Buffer, name string, values *[256]int64) {
	b.WriteString("# ")
	b.WriteString(name)
	b.WriteString(" = [")
	for i, v := range values {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(v, 10))
	}
	b.WriteString("]\n")
}

func (m *memstats) write(b *bytes.Buffer) {
	fmt.Fprintf(b, "\n# runtime.MemStats\n# Alloc = %d\n# TotalAlloc = %d\n# Sys = %d\n# Lookups = 0\n", m.alloc, m.totalAlloc, m.sys)
	fmt.Fprintf(b, "# Mallocs = %d\n# Frees = %d\n# HeapAlloc = %d\n# HeapSys = %d\n# HeapIdle = %d\n", m.mallocs, m.frees, m.alloc, m.heapSys, m.heapIdle)
	fmt.Fprintf(b, "# HeapInuse = %d\n# HeapReleased = %d\n# HeapObjects = %d\n", m.heapInuse, m.heapReleased, m.heapObjects)
	fmt.Fprintf(b, "# Stack = %d / %d\n# MSpan = %d / %d\n# MCache = %d / %d\n", m.stackInuse, m.stackSys, m.mspanInuse, m.mspanSys, m.mcacheInuse, m.mcacheSys)
	fmt.Fprintf(b, "# BuckHashSys = %d\n# GCSys = %d\n# OtherSys = %d\n# NextGC = %d\n# LastGC = %d\n", m.buckHash, m.gcSys, m.otherSys, m.nextGC, m.lastGC)
	writeArray(b, "PauseNs", &m.pauseNs)
	writeArray(b, "PauseEnd", &m.pauseEnd)
	fmt.Fprintf(b, "# NumGC = %d\n# NumForcedGC = %d\n# GCCPUFraction = %v\n# DebugGC = false\n# MaxRSS = %d\n", m.numGC, m.numForced, m.gcCPU, m.maxRSS)
}

// renderMetrics writes what client_golang's Go and process collectors would, for the fields the engine reads.
func renderMetrics(b *bytes.Buffer, s state, m memstats) {
	metric := func(name, help, kind string, value int64) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, kind, name, value)
	}
	metric("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", m.rss)
	metric("go_goroutines", "Number of goroutines that currently exist.", "gauge", s.goroutines)
	metric("go_threads", "Number of OS threads created.", "gauge", 12)
	metric("go_memstats_sys_bytes", "Number of bytes obtained from system.", "gauge", m.sys)
	metric("go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", "gauge", m.heapReleased)
	metric("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", "gauge", m.alloc)
	metric("go_gc_finalizers_queued_finalizers_total", "Total finalizers queued for execution.", "counter", s.finQueued)
	metric("go_gc_finalizers_executed_finalizers_total", "Total finalizers executed.", "counter", s.finExecuted)
	metric("go_gc_heap_live_bytes", "Heap memory occupied by live objects that were marked by the previous GC.", "gauge", int64(s.live))
	metric("go_gc_heap_objects_objects", "Number of objects, live or unswept, occupying heap memory.", "gauge", m.heapObjects)
}

// goroutine groups of a typical server, plus the leak's blocked goroutines.
var goroutineGroups = []struct {
	state  string
	frames []string
}{
	{"IO wait", []string{"internal/poll.runtime_pollWait+0x84", "internal/poll.(*pollDesc).waitRead+0x28b", "net.(*conn).Read+0x25", "net/http.(*connReader).Read+0x14a", "net/http.(*conn).serve+0x68f"}},
	{"select", []string{"github.com/acme/shop/worker.(*Pool).run+0x1b5", "github.com/acme/shop/worker.New.func1+0x25"}},
	{"chan receive", []string{"github.com/acme/shop/events.(*Bus).loop+0x9d"}},
	{"sync.Cond.Wait", []string{"sync.runtime_notifyListWait+0x11e", "sync.(*Cond).Wait+0x8c", "database/sql.(*DB).connectionOpener+0x5d"}},
}

func writeStack(b *bytes.Buffer, frames []string, debug2 bool) {
	for i, f := range frames {
		pc := 0x4a0000 + i*0x1234 + len(f)
		if debug2 {
			fmt.Fprintf(b, "%s(...)\n\t/src/acme/shop/main.go:%d +%#x\n", f[:len(f)-len(f[findPlus(f):])], 100+i, pc&0xfff)
		} else {
			fmt.Fprintf(b, "#\t%#x\t%s\t/src/acme/shop/main.go:%d\n", pc, f, 100+i)
		}
	}
}

func findPlus(f string) int {
	for i := len(f) - 1; i >= 0; i-- {
		if f[i] == '+' {
			return i
		}
	}
	return len(f)
}

var leakFrames = []string{"runtime.gopark+0xce", "runtime.chanrecv+0x3ed", "github.com/acme/shop/session.(*Manager).watch+0x14", "github.com/acme/shop/session.(*Manager).Open.gowrap1+0x25"}
var finalizerFrames = []string{"sync.runtime_SemacquireMutex+0x25", "sync.(*Mutex).lockSlow+0x15d", "github.com/acme/shop/conn.(*Handle).release+0x1f", "runtime.runFinalizers+0x2f4"}

// renderGoroutines writes goroutine?debug=1 (groups with counts), or with debug2 one entry per goroutine
// (capped at `maxEntries`, as a dump would be truncated), like runtime/pprof.
func renderGoroutines(b *bytes.Buffer, tg *target, s state, debug2 bool, maxEntries int) {
	rest := s.goroutines - s.leaked
	groups := int64(len(goroutineGroups))
	type g struct {
		n      int64
		state  string
		frames []string
	}
	var gs []g
	if s.leaked > 0 {
		gs = append(gs, g{s.leaked, "chan receive", leakFrames})
	}
	if tg.kind == kindFinalizerLeak {
		gs = append(gs, g{1, "sync.Mutex.Lock", finalizerFrames})
		rest--
	}
	for i, grp := range goroutineGroups {
		n := rest / groups
		if int64(i) < rest%groups {
			n++
		}
		gs = append(gs, g{n, grp.state, grp.frames})
	}
	if !debug2 {
		fmt.Fprintf(b, "goroutine profile: total %d\n", s.goroutines)
		for _, grp := range gs {
			if grp.n <= 0 {
				continue
			}
			fmt.Fprintf(b, "%d @", grp.n)
			for i := range grp.frames {
				fmt.Fprintf(b, " %#x", 0x4a0000+i*0x1234+len(grp.frames[i])+1)
			}
			b.WriteString("\n")
			writeStack(b, grp.frames, false)
			b.WriteString("\n")
		}
		return
	}
	id := 1
	for _, grp := range gs {
		for k := int64(0); k < grp.n && id <= maxEntries; k++ {
			fmt.Fprintf(b, "goroutine %d [%s]:\n", id, grp.state)
			writeStack(b, grp.frames, true)
			b.WriteString("\n")
			id++
		}
	}
}
