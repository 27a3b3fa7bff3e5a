//! `GET /api/campaign`: what the app needs to know about the label campaign — access mode and
//! whose invite this browser holds, the guidelines, whether annotators may write their own
//! prompts, the share of blind battles and the prompt set's progress.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignInfo {
    pub access: AccessMode,
    /// Under invite access: who this request's token belongs to (`None` under open access).
    pub annotator: Option<InvitedAnnotator>,
    /// The labelling guidelines, Markdown.
    pub guidelines: Option<String>,
    /// Whether a pair may label a prompt its annotator wrote.
    pub own_prompts: bool,
    /// The share of comparisons drawn as battles between two versions (0 with one version).
    pub battle_share: f64,
    pub prompts: PromptProgress,
}

impl CampaignInfo {
    /// Why this browser may not label, if it may not.
    pub fn sign_in_problem(&self) -> Option<&'static str> {
        if self.access != AccessMode::Invite {
            return None;
        }
        match self.annotator.as_ref().map(|a| a.status) {
            Some(InviteStatus::Valid) => None,
            Some(InviteStatus::Revoked) => {
                Some("Your invite has been revoked; ask the campaign's lead.")
            }
            Some(InviteStatus::Unknown) => {
                Some("This invite is not known to the server; ask for a new link.")
            }
            Some(InviteStatus::Missing) | None => {
                Some("This server labels by invitation: open the invite link you were sent.")
            }
        }
    }
}

/// Who may label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Anonymous labelling: anyone who can reach the server may vote.
    Open,
    /// Only invited annotators, each with their bearer token.
    Invite,
}

impl std::str::FromStr for AccessMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "open" => Ok(Self::Open),
            "invite" => Ok(Self::Invite),
            other => Err(format!("`{other}`: expected open or invite")),
        }
    }
}

/// The annotator a request's invite token names, and the token's standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitedAnnotator {
    pub name: Option<String>,
    pub status: InviteStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    Valid,
    Revoked,
    /// A token the server does not know.
    Unknown,
    /// No token sent.
    Missing,
}

/// Labelling progress over the whole prompt set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromptProgress {
    pub prompts: u64,
    /// Prompts with all the labels they want.
    pub complete: u64,
    pub labels: u64,
    pub labels_wanted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(body: &str) -> CampaignInfo {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_wire_names_read_and_each_invite_status_says_what_to_do() {
        let progress = r#""prompts":{"prompts":3,"complete":1,"labels":4,"labels_wanted":9}"#;
        let open = campaign(&format!(
            r#"{{"access":"open","annotator":null,"guidelines":null,"own_prompts":true,"battle_share":0.5,{progress}}}"#
        ));
        assert_eq!(open.access, AccessMode::Open);
        assert_eq!(open.prompts.labels_wanted, 9);
        assert_eq!(open.sign_in_problem(), None);
        for (status, problem) in [
            ("valid", None),
            ("revoked", Some("revoked")),
            ("unknown", Some("not known")),
            ("missing", Some("invitation")),
        ] {
            let info = campaign(&format!(
                r#"{{"access":"invite","annotator":{{"name":null,"status":"{status}"}},"guidelines":"Be kind","own_prompts":false,"battle_share":0.0,{progress}}}"#
            ));
            match (info.sign_in_problem(), problem) {
                (None, None) => {}
                (Some(text), Some(part)) => assert!(text.contains(part), "{status}: {text}"),
                (got, want) => panic!("{status}: {got:?}, expected {want:?}"),
            }
            let back = serde_json::to_value(&info).unwrap();
            assert_eq!(back["annotator"]["status"], status);
        }
        assert!(
            "closed"
                .parse::<AccessMode>()
                .unwrap_err()
                .contains("open or invite")
        );
    }
}
