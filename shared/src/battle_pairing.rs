//! Which served version a blind battle pits against the one a labeller has loaded. While the
//! server has candidates, battles are candidate against default — so a labeller on the default
//! (or on any other version) meets a candidate, and one who loaded a candidate by hand meets
//! the default, never another candidate. Without candidates, any other version. The app and
//! the scripted labellers of `cargo xtask bench-flywheel` draw from the same list.

/// The versions `loaded` may battle, in `versions`' order.
pub fn battle_opponents<'a>(
    loaded: &str,
    default_version: Option<&str>,
    candidates: &[String],
    versions: &'a [String],
) -> Vec<&'a str> {
    let others = versions.iter().map(String::as_str).filter(|v| *v != loaded);
    if candidates.is_empty() {
        return others.collect();
    }
    if candidates.iter().any(|c| c == loaded) {
        return others.filter(|v| Some(*v) == default_version).collect();
    }
    others
        .filter(|v| candidates.iter().any(|c| c == v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn candidates_battle_the_default_and_nothing_else() {
        let versions = names(&["v1", "v2", "v3", "v4"]);
        let candidates = names(&["v3", "v4"]);
        // On the default: a candidate.
        assert_eq!(
            battle_opponents("v2", Some("v2"), &candidates, &versions),
            vec!["v3", "v4"]
        );
        // On a candidate loaded by hand: the default, not the other candidate.
        assert_eq!(
            battle_opponents("v3", Some("v2"), &candidates, &versions),
            vec!["v2"]
        );
        // On an old version: a candidate.
        assert_eq!(
            battle_opponents("v1", Some("v2"), &candidates, &versions),
            vec!["v3", "v4"]
        );
        // Without candidates: any other version; alone: none.
        assert_eq!(
            battle_opponents("v2", Some("v2"), &[], &versions),
            vec!["v1", "v3", "v4"]
        );
        assert!(battle_opponents("v1", Some("v1"), &[], &names(&["v1"])).is_empty());
        // A candidate with no default named has no opponent.
        assert!(battle_opponents("v3", None, &candidates, &versions).is_empty());
    }
}
