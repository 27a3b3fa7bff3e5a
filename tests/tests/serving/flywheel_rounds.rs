//! `dpo flywheel` on a real store and models directory with the tiny model: no round below
//! `--min-votes`; at it, one round trains on the default's votes, records its rows and
//! publishes a candidate whose parent is the default (the default does not move); a
//! candidate that wins its battles is promoted and one that loses them retired, with the
//! figures recorded; a flywheel never works while another holds the store's lease; a round a
//! stopped flywheel left unfinished is recorded as failed; a flywheel killed (SIGKILL, with
//! its training child) in the middle of a round is replaced once its lease lapses, and the
//! round is trained again under a new id; a round killed at any instant (before it starts,
//! while training, after its candidate row, during or after the export) leaves a whole store
//! and models directory for the next flywheel; two flywheels started together on one
//! PostgreSQL store run one round. On SQLite and PostgreSQL.

use std::path::Path;

use flywheel_tests::postgres_database::fresh_postgres_database;
use flywheel_tests::served_versions::export_tiny_version;
use flywheel_tests::{run_dpo, succeed};
use native_trainer::store::open_store;
use native_trainer::store::version_events::NewVersionChange;
use shared::api::VersionChangeKind;
use shared::{ModelRef, PreferencePair, Vote};

use super::label_campaign;

/// A vote between an answer of `a` and one of `b` (on-policy when they are the same), with
/// the JSON the store keeps.
fn vote(key: &str, a: &ModelRef, b: &ModelRef, vote: Vote) -> (PreferencePair, String) {
    let prompt = format!("Question {key}: which colour?");
    let pair = label_campaign::vote(&prompt, ("blue sky", a), ("red mud", b), "anon-1", vote);
    let json = serde_json::to_string(&pair).unwrap();
    (pair, json)
}

/// `dpo flywheel --once` with the test's settings and `extra`; its stderr.
fn flywheel_once(dir: &Path, db: &str, extra: &[&str]) -> String {
    let config = dir.join("round.toml");
    std::fs::write(
        &config,
        "max_steps = 2\nper_device_train_batch_size = 2\nlearning_rate = 1e-3\n",
    )
    .unwrap();
    let mut args = vec!["flywheel", "--once", "--db", db, "--quant", "q8_0"];
    args.extend_from_slice(&["--look-every", "10", "--battle-budget", "40"]);
    args.extend_from_slice(extra);
    let (_, stderr) = succeed(
        run_dpo(
            &args,
            &[
                ("--models-dir", &dir.join("models")),
                ("--config", &config),
                ("--work-dir", &dir.join("runs")),
            ],
        ),
        "dpo flywheel --once",
    );
    stderr
}

fn events(db: &str) -> Vec<(String, &'static str)> {
    open_store(db)
        .unwrap()
        .version_events()
        .unwrap()
        .into_iter()
        .map(|e| (e.version, e.kind.as_str()))
        .collect()
}

fn roles(db: &str, dir: &Path) -> String {
    let (listing, _) = succeed(
        run_dpo(
            &["versions", "list", "--db", db],
            &[("--models-dir", &dir.join("models"))],
        ),
        "dpo versions list",
    );
    listing
}

#[test]
fn a_round_starts_at_min_votes_and_its_candidate_is_promoted_by_its_battles() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    let v0 = export_tiny_version(&dir.path().join("models"), "v0", "q8_0", None);
    let store = open_store(&db).unwrap();
    let on_policy: Vec<_> = (0..6)
        .map(|i| vote(&format!("v0-{i}"), &v0, &v0, Vote::A))
        .collect();
    store.insert_batch(&on_policy).unwrap();

    let stderr = flywheel_once(dir.path(), &db, &["--min-votes", "7"]);
    assert!(stderr.contains("6 usable votes on v0"), "{stderr}");
    assert!(events(&db).is_empty(), "no round below --min-votes");

    flywheel_once(dir.path(), &db, &["--min-votes", "6"]);
    assert_eq!(
        events(&db),
        [
            ("v0-r1".to_string(), "round_started"),
            ("v0-r1".to_string(), "candidate")
        ]
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models/v0-r1/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["parent_version"], "v0");
    assert_eq!(manifest["training"]["global_step"], 2);
    let listing = roles(&db, dir.path());
    assert!(listing.contains("| v0 | - | default |"), "{listing}");
    assert!(listing.contains("| v0-r1 | v0 | candidate |"), "{listing}");

    // While the candidate battles, no new round and no decision before the first look.
    let r1 = ModelRef {
        version: "v0-r1".into(),
        sha256: manifest["gguf"]["sha256"].as_str().unwrap().into(),
    };
    let battles: Vec<_> = (0..9)
        .map(|i| vote(&format!("battle-{i}"), &r1, &v0, Vote::A))
        .collect();
    store.insert_batch(&battles).unwrap();
    flywheel_once(dir.path(), &db, &["--min-votes", "1"]);
    assert_eq!(events(&db).len(), 2);

    // The tenth battle is a look: 10 of 10 clears the corrected interval (4 looks: the
    // lower end is 0.00625^(1/10) ≈ 0.60 > 0.5).
    store
        .insert_batch(&[vote("battle-9", &v0, &r1, Vote::B)])
        .unwrap();
    flywheel_once(dir.path(), &db, &["--min-votes", "100"]);
    let recorded = open_store(&db).unwrap().version_events().unwrap();
    let promoted = recorded.last().unwrap();
    assert_eq!(
        (promoted.version.as_str(), promoted.kind),
        ("v0-r1", VersionChangeKind::Promoted)
    );
    assert!(
        promoted
            .reason
            .contains("won 10.0 of 10 battles against v0"),
        "{}",
        promoted.reason
    );
    let listing = roles(&db, dir.path());
    assert!(listing.contains("| v0-r1 | v0 | default |"), "{listing}");
}

fn losing_candidates_retire_and_leases_and_stopped_rounds_hold(dir: &Path, db: &str) {
    let models = dir.join("models");
    let v0 = export_tiny_version(&models, "v0", "q8_0", None);
    let v1 = export_tiny_version(&models, "v1", "q4_0", Some("v0"));
    succeed(
        run_dpo(
            &["versions", "candidate", "v1", "--db", db],
            &[("--models-dir", &models)],
        ),
        "dpo versions candidate",
    );
    let store = open_store(db).unwrap();

    // Another flywheel's lease: this one does nothing, though the candidate lost 10 of 10.
    let lost: Vec<_> = (0..10)
        .map(|i| vote(&format!("lost-{i}"), &v1, &v0, Vote::B))
        .collect();
    store.insert_batch(&lost).unwrap();
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(
        store
            .try_lease("flywheel", "someone-else", now_ms, 60_000)
            .unwrap()
    );
    let stderr = flywheel_once(dir, db, &[]);
    assert!(stderr.contains("another dpo flywheel holds"), "{stderr}");
    assert_eq!(events(db).len(), 1);
    store.release_lease("flywheel", "someone-else").unwrap();

    // A round a stopped flywheel left: recorded as failed, and the loss retires v1.
    store
        .record_version_event(NewVersionChange {
            version: "v0-r1",
            kind: VersionChangeKind::RoundStarted,
            parent_version: Some("v0"),
            reason: "6 usable votes on v0",
        })
        .unwrap();
    flywheel_once(dir, db, &["--min-votes", "100"]);
    let recorded = events(db);
    assert!(
        recorded.contains(&("v0-r1".to_string(), "round_failed")),
        "{recorded:?}"
    );
    assert_eq!(
        recorded.last().unwrap(),
        &("v1".to_string(), "retired"),
        "{recorded:?}"
    );
    let listing = roles(db, dir);
    assert!(listing.contains("| v0 | - | default |"), "{listing}");
    assert!(listing.contains("| v1 | v0 | - |"), "{listing}");
}

#[test]
fn losing_candidates_retire_and_leases_and_stopped_rounds_hold_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    losing_candidates_retire_and_leases_and_stopped_rounds_hold(dir.path(), &db);
}

#[test]
fn losing_candidates_retire_and_leases_and_stopped_rounds_hold_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    losing_candidates_retire_and_leases_and_stopped_rounds_hold(
        dir.path(),
        &fresh_postgres_database(),
    );
}

/// A SQLite store in `dir` with v0 served and four on-policy votes on it: (db, models dir).
fn four_votes_on_v0(dir: &Path) -> (String, std::path::PathBuf) {
    let db = format!("sqlite:{}", dir.join("pairs.db").display());
    let models = dir.join("models");
    let v0 = export_tiny_version(&models, "v0", "q8_0", None);
    let on_policy: Vec<_> = (0..4)
        .map(|i| vote(&format!("v0-{i}"), &v0, &v0, Vote::A))
        .collect();
    open_store(&db).unwrap().insert_batch(&on_policy).unwrap();
    (db, models)
}

/// `dpo flywheel --once --min-votes 4` with `config` and `extra`, in its own process group
/// (so a test can SIGKILL it with its training child at once), its output discarded.
fn spawn_killable_flywheel(
    dir: &Path,
    db: &str,
    config: &Path,
    extra: &[&str],
) -> std::process::Child {
    use std::os::unix::process::CommandExt;

    flywheel_tests::dpo()
        .args(["flywheel", "--once", "--min-votes", "4", "--db", db])
        .args(extra)
        .arg("--models-dir")
        .arg(dir.join("models"))
        .arg("--config")
        .arg(config)
        .arg("--work-dir")
        .arg(dir.join("runs"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn a_flywheel_killed_while_training_is_replaced_and_the_round_trained_again() {
    let dir = tempfile::tempdir().unwrap();
    let (db, models) = four_votes_on_v0(dir.path());
    // A round long enough to be killed in: a million steps of the tiny model.
    let slow = dir.path().join("slow.toml");
    std::fs::write(
        &slow,
        "max_steps = 1000000\nper_device_train_batch_size = 2\n",
    )
    .unwrap();
    let mut flywheel = spawn_killable_flywheel(dir.path(), &db, &slow, &["--lease-secs", "4"]);
    let started = std::time::Instant::now();
    while !dir.path().join("runs/v0-r1.train.log").exists()
        || std::fs::metadata(dir.path().join("runs/v0-r1.train.log"))
            .unwrap()
            .len()
            == 0
    {
        assert!(
            started.elapsed().as_secs() < 60,
            "the round never started training"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The machine stops: the flywheel and its training child, at once.
    let group = flywheel.id() as i32;
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status()
            .unwrap()
            .success()
    );
    flywheel.wait().unwrap();
    assert_eq!(events(&db), [("v0-r1".to_string(), "round_started")]);

    // While the dead flywheel's lease lasts (4 s) nobody works; after it lapses the next one does.
    let stderr = flywheel_once(dir.path(), &db, &["--min-votes", "4"]);
    assert!(stderr.contains("another dpo flywheel holds"), "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(4_500));
    flywheel_once(dir.path(), &db, &["--min-votes", "4"]);
    assert_eq!(
        events(&db),
        [
            ("v0-r1".to_string(), "round_started"),
            ("v0-r1".to_string(), "round_failed"),
            ("v0-r2".to_string(), "round_started"),
            ("v0-r2".to_string(), "candidate"),
        ]
    );
    assert!(
        !models.join("v0-r1").exists(),
        "nothing of the killed round is served"
    );
    let listing = roles(&db, dir.path());
    assert!(listing.contains("| v0-r2 | v0 | candidate |"), "{listing}");
}

/// Whatever instant the machine stops a round at (SIGKILL of the flywheel and its child,
/// swept from the round's start to past its export), the next flywheel — once the lease
/// lapses — leaves the store and the models directory whole: one default, every served
/// version complete, every version with a `candidate` row either served or recorded failed,
/// and a new round that publishes its candidate.
#[test]
fn a_round_killed_at_any_step_is_failed_cleanly_and_run_again() {
    for delay_ms in [0u64, 150, 250, 320, 400, 600, 3_000] {
        let dir = tempfile::tempdir().unwrap();
        let (db, models) = four_votes_on_v0(dir.path());
        let config = dir.path().join("round.toml");
        std::fs::write(&config, "max_steps = 2\nper_device_train_batch_size = 2\n").unwrap();
        let mut flywheel = spawn_killable_flywheel(
            dir.path(),
            &db,
            &config,
            &["--lease-secs", "1", "--quant", "q8_0"],
        );
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", flywheel.id())])
            .status();
        flywheel.wait().unwrap();
        let killed_at = events(&db);
        eprintln!("killed after {delay_ms} ms: {killed_at:?}");

        // The next flywheel, after the lease (1 s) lapsed.
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        std::fs::write(&config, "max_steps = 2\nper_device_train_batch_size = 2\n").unwrap();
        flywheel_once(dir.path(), &db, &["--min-votes", "4"]);
        let recorded = events(&db);
        let served: Vec<String> = std::fs::read_dir(&models)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|name| !name.starts_with('.'))
            .collect();
        for version in &served {
            let manifest: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(models.join(version).join("manifest.json"))
                    .unwrap_or_else(|e| panic!("{delay_ms} ms: {version} has no manifest: {e}")),
            )
            .unwrap();
            let gguf = std::fs::read(models.join(version).join("model.gguf")).unwrap();
            assert_eq!(
                manifest["gguf"]["sha256"].as_str().unwrap(),
                flywheel_tests::sha256_hex(&gguf),
                "{delay_ms} ms: {version} is served incomplete"
            );
        }
        for (version, kind) in &recorded {
            if *kind == "candidate" {
                assert!(
                    served.contains(version)
                        || recorded.contains(&(version.clone(), "round_failed")),
                    "{delay_ms} ms: {version} is a candidate neither served nor failed: {recorded:?}"
                );
            }
        }
        let listing = roles(&db, dir.path());
        assert_eq!(
            listing.matches("| default |").count(),
            1,
            "{delay_ms} ms: {listing}"
        );
        let candidates = recorded.iter().filter(|(_, k)| *k == "candidate").count();
        let failed = recorded
            .iter()
            .filter(|(_, k)| *k == "round_failed")
            .count();
        assert!(
            served.len() == 2 && listing.contains("| candidate |"),
            "{delay_ms} ms (killed at {killed_at:?}): a round must have published its candidate: \
             {served:?} {recorded:?}\n{listing}"
        );
        assert!(
            candidates >= 1 && failed <= 1,
            "{delay_ms} ms: {recorded:?}"
        );
    }
}

/// Two `dpo flywheel` processes started together on one PostgreSQL store run one round
/// between them: one candidate, one `round_started`.
#[test]
fn two_flywheels_started_together_on_postgresql_run_one_round() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database();
    let models = dir.path().join("models");
    let v0 = export_tiny_version(&models, "v0", "q8_0", None);
    let store = open_store(&db).unwrap();
    let on_policy: Vec<_> = (0..4)
        .map(|i| vote(&format!("v0-{i}"), &v0, &v0, Vote::A))
        .collect();
    store.insert_batch(&on_policy).unwrap();
    let config = dir.path().join("round.toml");
    std::fs::write(&config, "max_steps = 20\nper_device_train_batch_size = 2\n").unwrap();
    let flywheels: Vec<_> = (0..2)
        .map(|i| {
            flywheel_tests::dpo()
                .args(["flywheel", "--once", "--min-votes", "4", "--quant", "q8_0"])
                .args(["--db", &db])
                .arg("--models-dir")
                .arg(&models)
                .arg("--config")
                .arg(&config)
                .arg("--work-dir")
                .arg(dir.path().join(format!("runs-{i}")))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = flywheels
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            String::from_utf8_lossy(&output.stderr).to_string()
        })
        .collect();
    assert_eq!(
        events(&db),
        [
            ("v0-r1".to_string(), "round_started"),
            ("v0-r1".to_string(), "candidate")
        ],
        "{outputs:?}"
    );
    let listing = roles(&db, dir.path());
    assert!(listing.contains("| v0-r1 | v0 | candidate |"), "{listing}");
}
