//! trove-bench: what `trove bench` runs. It owns the load generator
//! (monoio, open loop, HdrHistogram), the baselines (nginx, fio, loopback
//! TCP) and the reports. It talks to trove only over HTTP, as a user would,
//! and never imports the engine.
//!
//! Files: `load.rs` what a load run is and measured, `loadgen.rs` the
//! closed-loop generator and `openloop.rs` the open-loop one (neither
//! imports the other); `baseline/` what trove is compared
//! with; `node.rs` starting a node and loading it; `object.rs` the object
//! benchmark; `git.rs` and `mount.rs` the git and mount benchmarks, over
//! `upstream.rs` (the repo and the git daemon they clone from),
//! `steps.rs` (how a timed step starts; medians) and `reads.rs` (the
//! reads the mount bench times); `report.rs` JSON,
//! markdown and SVG; `cli.rs` the subcommands.

pub mod baseline;
pub mod cli;
pub mod coldstart;
pub mod git;
pub mod load;
pub mod loadgen;
pub mod mount;
mod mount_hung;
mod mount_proc;
mod mount_random;
mod mount_repo;
mod mount_transport;
mod mount_writes;
pub mod node;
pub mod object;
pub mod openloop;
pub mod reads;
pub mod report;
pub mod rows;
pub mod seaweed;
pub mod steps;
pub mod upstream;
