//! The integration tests of the C library crate, as one binary. The C and C++ suites
//! (`tests/c/run.sh`) exercise the same functions from C, under the sanitizers.

mod fuzz_corpus;
