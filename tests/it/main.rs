//! Integration tests of rgd (one test binary, modules per area).

// every built-in component, through the one list
use rgd_components as _;

mod assets;
mod bad_input;
mod bigbench;
mod cli;
mod common;
mod cost;
mod extremes;
mod fake_openai;
mod fixture;
mod formats;
mod generation;
mod labelers;
mod library;
mod mmlu_pro;
mod new_router;
mod openai;
mod plugins;
mod real;
mod real_server;
