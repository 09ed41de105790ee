//! Lifecycle request-rate bench (filled in below).

fn main() {}
