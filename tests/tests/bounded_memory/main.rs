//! What allocation bounds hold: hostile files never make a reader allocate without bound, and a training step stays under its memory bound. One binary with the counting allocator `dpo` runs on; every test holds `one_test_at_a_time()` so that no other test's allocations count.

use flywheel_tests::peak_memory::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

mod hostile_files;
mod train_memory;
