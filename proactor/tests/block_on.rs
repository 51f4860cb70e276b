//! `block_on` and `run` refuse to nest (a nested loop would stall the outer one).
mod common;
use proactor::Proactor;

#[proactor::test]
fn nested_block_on_and_run_are_refused_with_a_clear_error(p: &Proactor) {
    let (inner, ran) = p.block_on(async {
        let q = common::proactor(proactor::DriverChoice::Auto);
        let nested = q.try_block_on(async { 42 }).unwrap_err();
        let run = q.run().unwrap_err();
        // The same proactor, nested in itself, is refused too.
        let same = proactor::Handle::current().try_block_on(async {}).unwrap_err();
        for e in [&nested, &run, &same] {
            assert!(e.to_string().contains("already drives a proactor"), "{e}");
        }
        (nested.to_string(), run.to_string())
    });
    assert!(inner.contains("block_on") && ran.contains("run"));
    // Once the outer call returned, the thread may drive a loop again.
    assert_eq!(p.try_block_on(async { 7 }).unwrap(), 7);
    p.run().unwrap();
}
