//! The integration tests of the `metafed` command, as one binary: it runs the built binary as a
//! user would and reads what it prints.

mod cli;
mod common;
