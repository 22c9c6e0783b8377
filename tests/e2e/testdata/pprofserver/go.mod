module memorywatch.test/pprofserver

go 1.22
