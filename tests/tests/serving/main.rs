//! `dpo serve` over real HTTP on SQLite and PostgreSQL: the pair API, label campaigns, prompt
//! leases on an injected clock, the versions' roles, and the OpenAPI contract fuzzed by
//! schemathesis.

mod api_contract;
mod dpo_serve;
mod flywheel_rounds;
mod label_campaign;
mod prompt_leases;
mod version_roles;
