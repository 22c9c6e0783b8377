"""The MemoryWatch local control plane: real etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok on 127.0.0.1, an S3 server, and a pod runner that runs pod containers as local processes.

Entry point: hack/local-cluster (up | down | status). See docs/local-cluster.md.
This package is test/demo infrastructure; it is deliberately not part of the memorywatch package.
"""
