//! What the stored labels say, computed from the pair store and read by `serve` (stats, the
//! dashboard, `dpo rounds`), `train` (the votes a run learns from) and the campaign commands:
//! how far annotators agree (`annotator_agreement.rs`), which votes a training run takes and
//! how each comparison's labels combine (`vote_selection.rs`), the labels' quality report of
//! `dpo pairs quality` (`pair_quality.rs`), and how model versions fare in blind battles
//! (`version_ratings.rs`: Bradley–Terry ratings; `binomial_interval.rs`: exact intervals on win
//! rates; `version_standings.rs`: each served version's standing; `promotion_rule.rs`: when
//! battles have shown a version better or worse than its parent).

pub mod annotator_agreement;
pub mod binomial_interval;
pub mod pair_quality;
pub mod promotion_rule;
pub mod version_ratings;
pub mod version_standings;
pub mod vote_selection;

#[cfg(test)]
mod test_votes;
