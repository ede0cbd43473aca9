//! Test environment: real etcd, kube-apiserver and two vcsim vCenters, started on
//! 127.0.0.1 and stopped on drop.

pub mod fault_proxy;
