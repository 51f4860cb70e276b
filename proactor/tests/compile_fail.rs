//! Compile-fail proofs of the rules the types enforce, one rule per file in `tests/ui/`: a
//! buffer handed to an operation is out of reach until the result hands it back, and only
//! `'static` owned buffers can be handed over; a proactor, its handles, its sockets and its
//! futures stay on their thread; an operation cannot be written without `unsafe`; and
//! `#[proactor::test]` refuses, saying which forms it takes, a signature it cannot run.
//!
//! Each `tests/ui/<name>.rs` must fail to compile with exactly the errors in `<name>.stderr`.
//! After a deliberate change of the diagnostics (a new rustc, a renamed type), regenerate them
//! with `TRYBUILD=overwrite cargo test -p proactor --test compile_fail` and read the diff.
//! Compile-time rules need no driver, so this test runs once, not once per driver.

#[test]
fn rules_the_compiler_enforces() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
