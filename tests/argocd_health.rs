//! Runs every Argo CD health check (`charts/vpsnap/argocd/health/<Kind>.lua`) against every
//! fixture in `charts/vpsnap/argocd/fixtures/<Kind>/` with a real Lua interpreter, and checks
//! that the shipped `argocd-cm` snippets carry exactly those scripts.
//!
//! Argo CD runs custom health checks with gopher-lua (Lua 5.1) with only the base, package and
//! table libraries (plus a safe `os`) and no `string`/`math`; this harness mirrors that: Lua 5.1,
//! base + package + table, the object as the global `obj`, the script's returned table read as
//! `{status, message}`. So a script that leans on a library Argo CD does not load, or on syntax
//! newer than 5.1, fails here rather than in a user's Argo CD.
//!
//! A fixture is one YAML file: `expected: {status, message?}` and `input:` (the object exactly as
//! Argo CD sees it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value};
use serde::Deserialize;

/// Every kind, with the health statuses its fixtures must cover at least once.
const KINDS: &[(&str, &[&str])] = &[
    ("VpsProvider", &["Healthy", "Progressing", "Degraded"]),
    ("VpsSnapshot", &["Healthy", "Progressing", "Degraded"]),
    ("VpsBackup", &["Healthy", "Progressing", "Degraded"]),
    (
        "VpsSnapshotSchedule",
        &["Healthy", "Progressing", "Degraded", "Suspended"],
    ),
    ("VpsRestore", &["Healthy", "Progressing", "Degraded"]),
];

/// The status codes Argo CD accepts from a health script (anything else becomes Unknown).
const ARGO_STATUSES: &[&str] = &[
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

const KEY_PREFIX: &str = "resource.customizations.health.vpsnap.dev_";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    expected: Expected,
    input: serde_yaml::Value,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Expected {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/vpsnap/argocd")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn script(kind: &str) -> String {
    read(&argocd_dir().join("health").join(format!("{kind}.lua")))
}

fn fixtures(kind: &str) -> Vec<(String, Fixture)> {
    let dir = argocd_dir().join("fixtures").join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let fixture: Fixture = serde_yaml::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            (name, fixture)
        })
        .collect()
}

/// Runs `script` the way Argo CD does and returns `(status, message)`.
fn run_health(script: &str, chunk_name: &str, obj: &serde_yaml::Value) -> Result<Expected, String> {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default())
        .map_err(|e| format!("create Lua state: {e}"))?;
    // JSON null / absent fields are plain `nil` in Argo CD, not a sentinel value; arrays get no
    // marker metatable.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua
        .to_value_with(obj, options)
        .map_err(|e| format!("convert object: {e}"))?;
    lua.globals()
        .set("obj", value)
        .map_err(|e| format!("set obj: {e}"))?;
    let returned: Value = lua
        .load(script)
        .set_name(chunk_name)
        .eval()
        .map_err(|e| format!("script error: {e}"))?;
    let Value::Table(hs) = returned else {
        return Err(format!(
            "script returned {}, Argo CD expects a table",
            returned.type_name()
        ));
    };
    let field = |hs: &Table, key: &str| -> Result<Option<String>, String> {
        hs.get::<Option<String>>(key)
            .map_err(|e| format!("hs.{key}: {e}"))
    };
    let status = field(&hs, "status")?.ok_or("hs.status is nil")?;
    let message = field(&hs, "message")?;
    Ok(Expected { status, message })
}

#[test]
fn every_health_script_matches_every_fixture() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (kind, required) in KINDS {
        let script = script(kind);
        let cases = fixtures(kind);
        assert!(!cases.is_empty(), "no fixtures for {kind}");
        let mut seen = BTreeSet::new();
        for (case, fixture) in &cases {
            let id = format!("{kind}/{case}");
            let input = &fixture.input;
            assert_eq!(
                input["apiVersion"].as_str(),
                Some("vpsnap.dev/v1alpha1"),
                "{id}: apiVersion"
            );
            assert_eq!(input["kind"].as_str(), Some(*kind), "{id}: kind");
            assert!(
                ARGO_STATUSES.contains(&fixture.expected.status.as_str()),
                "{id}: expected status {:?} is not an Argo CD health status",
                fixture.expected.status
            );
            seen.insert(fixture.expected.status.clone());
            ran += 1;
            match run_health(&script, &format!("{kind}.lua"), input) {
                Err(e) => failures.push(format!("{id}: {e}")),
                Ok(got) => {
                    let message_ok = fixture.expected.message.is_none()
                        || got.message == fixture.expected.message;
                    if got.status != fixture.expected.status || !message_ok {
                        failures.push(format!(
                            "{id}: expected {:?} {:?}, got {:?} {:?}",
                            fixture.expected.status,
                            fixture.expected.message,
                            got.status,
                            got.message
                        ));
                    }
                }
            }
        }
        for status in *required {
            assert!(
                seen.contains(*status),
                "{kind}: no fixture expects {status}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn health_scripts_and_fixture_dirs_are_exactly_the_kinds() {
    let kinds: BTreeSet<String> = KINDS.iter().map(|(k, _)| (*k).to_string()).collect();
    let listing = |dir: PathBuf, want_dirs: bool| -> BTreeSet<String> {
        fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.is_dir() == want_dirs)
            .map(|p| {
                let name = p.file_name().expect("name").to_string_lossy().into_owned();
                name.strip_suffix(".lua")
                    .map(str::to_string)
                    .unwrap_or(name)
            })
            .collect()
    };
    assert_eq!(
        listing(argocd_dir().join("health"), false),
        kinds,
        "health/*.lua"
    );
    assert_eq!(
        listing(argocd_dir().join("fixtures"), true),
        kinds,
        "fixtures/*/"
    );
}

/// The generated snippets carry the scripts byte for byte (`scripts/sync-manifests.sh`
/// regenerates them; `scripts/check-manifests.sh` fails on drift).
#[test]
fn argocd_cm_snippets_carry_the_scripts() {
    let want: BTreeMap<String, String> = KINDS
        .iter()
        .map(|(kind, _)| (format!("{KEY_PREFIX}{kind}"), script(kind)))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in [
        "charts/vpsnap/argocd/argocd-cm-snippet.yaml",
        "deploy/argocd/argocd-cm-snippet.yaml",
    ] {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&root.join(rel)))
            .unwrap_or_else(|e| panic!("parse {rel}: {e}"));
        assert_eq!(doc["kind"].as_str(), Some("ConfigMap"), "{rel}");
        assert_eq!(doc["metadata"]["name"].as_str(), Some("argocd-cm"), "{rel}");
        let got: BTreeMap<String, String> = serde_yaml::from_value(doc["data"].clone())
            .unwrap_or_else(|e| panic!("{rel}: data: {e}"));
        assert_eq!(
            got, want,
            "{rel} is out of date: run scripts/sync-manifests.sh"
        );
    }
    for rel in [
        "charts/vpsnap/argocd/argo-cd-values.yaml",
        "deploy/argocd/argo-cd-values.yaml",
    ] {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&root.join(rel)))
            .unwrap_or_else(|e| panic!("parse {rel}: {e}"));
        let got: BTreeMap<String, String> = serde_yaml::from_value(doc["configs"]["cm"].clone())
            .unwrap_or_else(|e| panic!("{rel}: configs.cm: {e}"));
        assert_eq!(
            got, want,
            "{rel} is out of date: run scripts/sync-manifests.sh"
        );
    }
}

/// The harness itself: a script using a library Argo CD does not load must fail here.
#[test]
fn harness_rejects_libraries_argo_cd_does_not_load() {
    let obj: serde_yaml::Value = serde_yaml::from_str("metadata: {name: x}").expect("yaml");
    let err = run_health(
        r#"return { status = string.upper("healthy") }"#,
        "string.lua",
        &obj,
    )
    .expect_err("string library must be absent");
    assert!(err.contains("string"), "{err}");
    let ok = run_health(
        "local hs = {} if obj.status == nil then hs.status = 'Progressing' end return hs",
        "nil.lua",
        &obj,
    )
    .expect("absent status is nil");
    assert_eq!(ok.status, "Progressing");
}
