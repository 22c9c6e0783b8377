module memorywatch.test/manyports

go 1.22
