//! `dpo serve` over real HTTP on SQLite and PostgreSQL: the pair API and its schema, label campaigns, the OpenAPI contract fuzzed by schemathesis.

mod api_contract;
mod dpo_serve;
mod label_campaign;
mod pair_schema;
mod prompt_leases;
