package main

/*
#include <stdlib.h>
#include <string.h>

// Writes every byte so the memory is resident, not merely reserved.
static void *leak_c_bytes(size_t n) {
	void *p = malloc(n);
	if (p != NULL) memset(p, 0xA5, n);
	return p;
}
*/
import "C"

import "sync"

var (
	cLeakMu sync.Mutex
	// Kept only so the pointers are reachable to a debugger; nothing ever frees them.
	cLeaked []uintptr
)

//go:noinline
func leakCMemory(n int64) {
	p := C.leak_c_bytes(C.size_t(n))
	cLeakMu.Lock()
	cLeaked = append(cLeaked, uintptr(p))
	cLeakMu.Unlock()
}
