//! The one integration-test binary: drives the real `smbatch` CLI and talks HTTP only to the
//! sandbox started in-process on 127.0.0.1. Each area of the tool has its own module.

mod accounted;
mod accounting;
mod actions;
mod cli;
mod common;
mod delete;
mod emulate;
mod export;
mod faithful;
mod fieldcheck;
mod fixtures;
mod hostile;
mod import;
mod matching;
mod memory;
mod migrate;
mod owners;
mod payments;
mod props;
mod reconcile;
mod sandbox;
mod v1;
mod validate;
