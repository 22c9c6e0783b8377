module memorywatch.test/fleetsim

go 1.22
