module memorywatch.test/gotargets

go 1.22
