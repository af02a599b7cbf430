//! trove-bench: load generators, baselines and reports for `trove bench`.
pub mod cli;
