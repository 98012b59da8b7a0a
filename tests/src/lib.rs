//! End-to-end test support: real `plum-controller` processes on loopback.
