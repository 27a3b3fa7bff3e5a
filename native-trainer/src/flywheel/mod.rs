//! The flywheel's model versions over time: which served version is the default and which are
//! candidates in blind battles (`version_roles.rs`); `dpo versions`, which lists the roles with
//! each candidate's record against its parent and changes them by hand (`versions_cli.rs`);
//! and `dpo flywheel`, which turns the loop by itself (`flywheel_cli.rs`): it judges the
//! candidates (`candidate_review.rs`) and trains the next one when enough votes arrive
//! (`training_round.rs`).

pub mod candidate_review;
pub mod flywheel_cli;
pub mod training_round;
pub mod version_roles;
pub mod versions_cli;
