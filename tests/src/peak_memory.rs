//! How much memory a piece of code allocates at its peak, for tests that bound it: what
//! hostile input may make a reader allocate, or what a training step holds. A test binary
//! opts in with `#[global_allocator] static A: CountingAllocator = CountingAllocator;` (the
//! allocator `dpo` itself runs on) and measures with `peak_growth`, each test holding
//! `one_test_at_a_time()`.

use std::sync::Mutex;

pub use native_trainer::process_allocator::CountingAllocator;
use native_trainer::process_allocator::{live_bytes, peak_bytes, reset_peak};

static MEASURING: Mutex<()> = Mutex::new(());
static ONE_TEST: Mutex<()> = Mutex::new(());

/// Holds the test binary to one test at a time while the guard lives, so that no other test's
/// allocations count in a measurement.
pub fn one_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_TEST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` and returns its result with the most bytes live at once during it beyond what
/// was live before. Other threads' allocations meanwhile count too: hold
/// `one_test_at_a_time()` in every test of the binary.
pub fn peak_growth<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let before = live_bytes();
    reset_peak();
    let result = work();
    (result, peak_bytes().saturating_sub(before))
}
