//! The OpenAPI 3.1 document of `dpo serve`, generated from the `shared::api` types and the
//! routes' own annotations (utoipa) and served at `GET /api/openapi.json` as this server runs
//! it: under `--access open` an annotator names itself (`?annotator=`), under `--access
//! invite` every labelling request needs the invite token. CI fuzzes the running server
//! against it with schemathesis (`tests/tests/serving/api_contract.rs`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use shared::api::AccessMode;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required};

use super::app_state::AppState;
use super::{admin_routes, model_files, pair_route, prompt_routes, stats_route};

/// The routes an annotator calls to label, which `--access invite` puts behind its token.
const LABELLING_PATHS: [&str; 3] = ["/api/pairs", "/api/prompts/next", "/api/campaign"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dpo serve",
        description = "Preference collection for DPO: the web app's votes in, TRL rows out. \
            Every error is `{\"error\": {\"field\": …, \"reason\": …}}`."
    ),
    paths(
        pair_route::submit_pair,
        prompt_routes::next_prompt,
        prompt_routes::campaign,
        model_files::list_models,
        model_files::model_file,
        stats_route::stats,
        admin_routes::dashboard,
        admin_routes::export_pairs,
        openapi_document,
    ),
    modifiers(&BearerTokens),
    tags(
        (name = "labels", description = "What the labelling app calls"),
        (name = "models", description = "The served model versions"),
        (name = "figures", description = "Progress and ratings"),
        (name = "admin", description = "Behind the admin token"),
    )
)]
pub struct ApiDoc;

/// The two bearer tokens: an annotator's invite (`--access invite`) and the admin's.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["invite_token", "admin_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "figures",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_document(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(document(state.access)).into_response()
}

/// The document for a server labelling with `access`.
pub fn document(access: AccessMode) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for path in LABELLING_PATHS {
        let item = doc.paths.paths.get_mut(path).expect("a documented path");
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            if access == AccessMode::Invite {
                let token = SecurityRequirement::new("invite_token", Vec::<String>::new());
                operation.security = Some(vec![token]);
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.name == "annotator"
                {
                    parameter.required = match access {
                        AccessMode::Open => Required::True,
                        AccessMode::Invite => Required::False,
                    };
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_wire_type_is_documented() {
        let doc = serde_json::to_value(document(AccessMode::Open)).unwrap();
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for route in [
            "/api/pairs",
            "/api/models",
            "/api/stats",
            "/api/export",
            "/api/prompts/next",
            "/api/campaign",
            "/api/admin/dashboard",
            "/api/openapi.json",
            "/models/{version}/{file}",
        ] {
            assert!(
                paths.contains(&route),
                "{route} is not in the document: {paths:?}"
            );
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "PreferencePair",
            "PairReceipt",
            "ApiError",
            "NextPrompt",
            "CampaignInfo",
            "ModelList",
            "StatsReport",
            "Dashboard",
        ] {
            assert!(schemas.contains_key(name), "no schema {name}");
        }
        let pair = &schemas["PreferencePair"]["properties"];
        let limits = shared::PairLimits::default();
        assert_eq!(
            pair["idempotency_key"]["pattern"],
            format!(
                "^[A-Za-z0-9._:-]{{{},{}}}$",
                limits.min_idempotency_key_chars, limits.max_id_chars
            )
        );
        let version = &pair["schema_version"];
        assert_eq!(
            version["minimum"],
            shared::preference_pair::OLDEST_PAIR_SCHEMA_VERSION
        );
        assert_eq!(
            version["maximum"],
            shared::preference_pair::PAIR_SCHEMA_VERSION
        );
        assert_eq!(
            doc["components"]["schemas"]["Vote"]["enum"],
            serde_json::json!(["a", "b", "tie", "both_bad"])
        );
    }

    #[test]
    fn the_access_mode_decides_who_names_the_annotator() {
        let open = serde_json::to_value(document(AccessMode::Open)).unwrap();
        let invite = serde_json::to_value(document(AccessMode::Invite)).unwrap();
        let next = |doc: &serde_json::Value| doc["paths"]["/api/prompts/next"]["get"].clone();
        assert_eq!(next(&open)["parameters"][0]["required"], true);
        assert!(next(&open).get("security").is_none());
        assert_eq!(next(&invite)["parameters"][0]["required"], false);
        assert_eq!(
            next(&invite)["security"],
            serde_json::json!([{"invite_token": []}])
        );
        assert!(
            invite["paths"]["/api/stats"]["get"]
                .get("security")
                .is_none()
        );
    }
}
