//! Integration tests of rgd (one test binary, modules per area).

mod common;
mod fixture;
