//! Integration tests of the `trove` binary with real parts: the node as a
//! process, curl and ureq as clients, SeaweedFS as S3, loop-mounted ext4.

mod harness;

mod api_auth;
mod bad_input;
mod checkout;
mod cli;
mod daemon;
mod faults;
mod fleet;
mod full_socket;
mod git;
mod hostile;
mod http_limits;
mod http_semantics;
mod lifecycle;
mod mount;
mod object_api;
mod overlay;
mod posix;
mod private;
mod remote;
mod s3_poison;
mod slow_clients;
mod snapshot;
mod transport;
mod tree;
mod upstream_faults;
mod upstream_load;
