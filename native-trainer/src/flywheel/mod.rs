//! The flywheel's model versions over time: which served version is the default and which are
//! candidates in blind battles (`version_roles.rs`), and `dpo versions`, which lists the roles
//! with each candidate's record against its parent and changes them (`versions_cli.rs`).

pub mod version_roles;
pub mod versions_cli;
