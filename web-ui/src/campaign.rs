//! The label campaign this server runs, as the app sees it (`GET /api/campaign`): open or
//! invite-only access and whether this browser's invite is valid, the guidelines, whether
//! annotators may write their own prompts, and the share of blind battles between versions.
//!
//! Signing in: an invite link (`/#invite=TOKEN`, from `dpo annotators add`) is opened once;
//! the token moves to localStorage (beside the vote queue) and leaves the address bar at
//! once, so it is never in a URL, a bookmark or the history after that.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::CampaignInfo;

use crate::browser_storage;
use crate::server_api;

const TOKEN_KEY: &str = "dpo.annotator-token";
const GUIDELINES_READ_KEY: &str = "dpo.guidelines-read";

/// The invited annotator's bearer token, if this browser has one.
pub fn annotator_token() -> Option<String> {
    browser_storage::get(TOKEN_KEY).filter(|t| !t.is_empty())
}

/// Takes an `#invite=TOKEN` fragment into localStorage and out of the address bar.
fn accept_invite_link() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let location = window.location();
    let Ok(hash) = location.hash() else {
        return;
    };
    let Some(token) = hash.strip_prefix("#invite=").filter(|t| !t.is_empty()) else {
        return;
    };
    if let Err(error) = browser_storage::set(TOKEN_KEY, token) {
        web_sys::console::warn_1(&format!("the invite could not be kept: {error}").into());
    }
    let clean = format!(
        "{}{}",
        location.pathname().unwrap_or_else(|_| "/".into()),
        location.search().unwrap_or_default()
    );
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&clean));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Campaign {
    /// `None` until the server answered.
    pub info: RwSignal<Option<CampaignInfo>>,
    pub error: RwSignal<Option<String>>,
    /// Whether the labeller has confirmed reading the current guidelines.
    pub guidelines_read: RwSignal<bool>,
}

fn guidelines_digest(text: &str) -> String {
    crate::model_download::sha256_hex(text.as_bytes())
}

impl Campaign {
    /// Signs in from an invite link if the page was opened with one, then asks the server.
    pub fn start() -> Self {
        accept_invite_link();
        let campaign = Self {
            info: RwSignal::new(None),
            error: RwSignal::new(None),
            guidelines_read: RwSignal::new(true),
        };
        spawn_local(async move {
            match server_api::campaign(annotator_token().as_deref()).await {
                Ok(info) => {
                    let read = info.guidelines.as_deref().is_none_or(|text| {
                        browser_storage::get(GUIDELINES_READ_KEY) == Some(guidelines_digest(text))
                    });
                    campaign.guidelines_read.set(read);
                    campaign.info.set(Some(info));
                }
                Err(error) => campaign.error.set(Some(error)),
            }
        });
        campaign
    }

    /// Remembers that these guidelines were read (they show again when they change).
    pub fn confirm_guidelines(self) {
        if let Some(text) = self.info.get_untracked().and_then(|i| i.guidelines) {
            let _ = browser_storage::set(GUIDELINES_READ_KEY, &guidelines_digest(&text));
        }
        self.guidelines_read.set(true);
    }

    pub fn guidelines(&self) -> Option<String> {
        self.info.get().and_then(|i| i.guidelines)
    }
}
