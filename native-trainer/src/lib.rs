//! The native half of the DPO flywheel, as a library behind the `dpo` binary: model fetching,
//! native chat with the candle engine, and (as the project grows) training, export, serving.

pub mod bench;
pub mod campaign;
pub mod chat;
pub mod default_models;
pub mod export;
pub mod fetch;
pub mod logging;
pub mod models_dir;
pub mod process_allocator;
pub mod serve;
pub mod store;
pub mod tensor_names;
pub mod train;
