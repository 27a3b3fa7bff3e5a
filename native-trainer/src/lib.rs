//! The native half of the DPO flywheel, as a library behind the `dpo` binary: model fetching
//! (`fetch`), native chat and benchmarks on every engine (`chat`, `bench`), the pair store
//! (`store`) and what its labels say (`label_analytics`), label campaigns (`campaign`), the
//! preference-collection server (`serve`), DPO training (`train`) and export (`export`), and
//! the versions' roles in the flywheel (`flywheel`).

pub mod bench;
pub mod campaign;
pub mod chat;
pub mod default_models;
pub mod export;
pub mod fetch;
pub mod flywheel;
pub mod label_analytics;
pub mod logging;
pub mod models_dir;
pub mod process_allocator;
pub mod serve;
pub mod store;
pub mod train;
