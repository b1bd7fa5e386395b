//! Integration tests of rgd (one test binary, modules per area).

// link the plugin crates so their registrations (typetag, inventory) are present
use rgd_embedders as _;
use rgd_process as _;
use rgd_router_baselines as _;
use rgd_router_cascal as _;
use rgd_router_dawid_skene as _;
use rgd_router_knn as _;
use rgd_router_neural as _;

mod assets;
mod bad_input;
mod bigbench;
mod cli;
mod common;
mod cost;
mod fake_openai;
mod fixture;
mod formats;
mod generation;
mod library;
mod openai;
mod plugins;
mod real;
mod real_server;
