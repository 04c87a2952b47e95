//! Benchmarks live in benches/*.rs
#![deny(unsafe_code)]
